# lossd_target_defaults(<target>): warnings, -Werror, sanitizers and, with
# LOSSD_FUZZ, libFuzzer's coverage instrumentation for one target. Applied
# per target by the directory that owns it; there are no global flags.
find_package(PkgConfig REQUIRED)

function(lossd_target_defaults tgt)
  target_compile_options(${tgt} PRIVATE
    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wno-unused-parameter -Wvla -Wformat=2 -fno-strict-aliasing)
  target_compile_definitions(${tgt} PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
  if(LOSSD_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
  if(LOSSD_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=${LOSSD_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${tgt} PRIVATE -fsanitize=${LOSSD_SANITIZE})
  endif()
  if(LOSSD_FUZZ)
    # Every target is instrumented for coverage and checked by ASan+UBSan;
    # only the harnesses (tests/fuzz) link libFuzzer's main.
    target_compile_options(${tgt} PRIVATE -fsanitize=fuzzer-no-link,address,undefined
                           -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${tgt} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
