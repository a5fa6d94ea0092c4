# Strict warnings on our own targets only; third-party headers come in as SYSTEM includes.
function(dsv4_target_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra -Wpedantic>
    # GCC 12 reports impossible -Wrestrict overlaps inside std::string concatenation (GCC PR 105651).
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-restrict>
    # Clang reports `omp simd` loops it could not vectorise (e.g. under sanitizer instrumentation).
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:Clang>>:-Wno-pass-failed>
    $<$<AND:$<COMPILE_LANGUAGE:CXX,C>,$<BOOL:${DSV4_FATAL_WARNINGS}>>:-Werror>)
endfunction()
