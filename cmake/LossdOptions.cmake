# lossd_target_defaults(<target>): warnings, -Werror and sanitizers for one
# target. Applied per target; there are no global flags.
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
endfunction()
