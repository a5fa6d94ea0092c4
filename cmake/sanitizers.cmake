# DSV4_SANITIZE=ON instruments every C/C++ target with ASan + UBSan; UBSan findings abort.
if(DSV4_SANITIZE)
  add_compile_options(
    $<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=address,undefined>
    $<$<COMPILE_LANGUAGE:CXX,C>:-fno-sanitize-recover=all>
    $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=address,undefined)
endif()

# DSV4_TSAN=ON instruments every target with ThreadSanitizer (CI builds only the concurrency
# stress test this way, with clang and its libomp).
if(DSV4_TSAN)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=thread>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=thread)
endif()
