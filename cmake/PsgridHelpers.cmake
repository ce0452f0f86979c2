# Small helpers so each folder declares its library and tests in one line each.

# psgrid_library(NAME SRCS a.cc b.cc DEPS lib1 lib2)
function(psgrid_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  target_compile_options(${name} PRIVATE ${PSGRID_WARNINGS})
endfunction()

# psgrid_test(NAME SRCS a_test.cc DEPS lib1 [LABELS l1 l2])
# Registers every TEST() of the binary with CTest through gtest_discover_tests.
function(psgrid_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${name} PRIVATE ${PSGRID_WARNINGS})
  set(props "")
  if(ARG_LABELS)
    set(props PROPERTIES LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 ${props}
                       WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
endfunction()
