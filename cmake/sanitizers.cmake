# DSV4_SANITIZE=ON instruments every C/C++ target with ASan + UBSan; UBSan findings abort.
if(DSV4_SANITIZE)
  add_compile_options(
    $<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=address,undefined>
    $<$<COMPILE_LANGUAGE:CXX,C>:-fno-sanitize-recover=all>
    $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=address,undefined)
endif()
