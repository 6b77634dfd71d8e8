# Install rules and the Debian package (CPack, DEB generator), included by the top CMakeLists.txt.
# scripts/package.sh builds the package from the release preset (CMAKE_INSTALL_PREFIX=/usr);
# scripts/package-test.sh installs, checks and purges it. See docs/operations.md.
#
# Paths written into the unit (the binary, the config file) come from CMAKE_INSTALL_PREFIX at
# configure time, so a tree configured for /usr/local installs a unit for /usr/local; the package
# is always built for the prefix the tree was configured with (CPACK_PACKAGING_INSTALL_PREFIX).
include(GNUInstallDirs)

# Debian's python3 (the baseline), not a pyenv shim found first on PATH: a shim costs ~100 ms a
# call, and the build runs the generator every time healer relinks.
if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python3_EXECUTABLE /usr/bin/python3)
endif()
find_package(Python3 COMPONENTS Interpreter)

set(healer_packaging_dir "${CMAKE_CURRENT_LIST_DIR}")
set(healer_generated_dir "${CMAKE_BINARY_DIR}/packaging")

# systemd's own directory under /usr (Debian 12: /lib/systemd/system); below any other prefix,
# <prefix>/lib/systemd/system, which systemd also reads for /usr/local. Derived from the prefix
# at every configure (a build dir configured for /usr/local first and packaged for /usr later
# must not keep the old directory); -DHEALER_SYSTEMD_UNIT_DIR=... overrides it.
set(HEALER_SYSTEMD_UNIT_DIR "" CACHE PATH
    "Where the systemd unit healer.service is installed (empty: derived from the prefix)")
set(healer_systemd_unit_dir "${HEALER_SYSTEMD_UNIT_DIR}")
if(NOT healer_systemd_unit_dir AND CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  pkg_get_variable(healer_systemd_unit_dir systemd systemdsystemunitdir)
endif()
if(NOT healer_systemd_unit_dir)
  set(healer_systemd_unit_dir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()

# --- the systemd unit and the default config file ---------------------------------------------
set(HEALER_BINARY "${CMAKE_INSTALL_FULL_BINDIR}/healer")
set(HEALER_CONFIG_FILE "${CMAKE_INSTALL_FULL_SYSCONFDIR}/healer/config.toml")
set(HEALER_DOC_DIR "${CMAKE_INSTALL_FULL_DOCDIR}")
configure_file("${healer_packaging_dir}/healer.service.in" "${healer_generated_dir}/healer.service"
               @ONLY)

# Debian wants a changelog in every binary package (gzip -9n: no name, no time stamp inside);
# its date honours SOURCE_DATE_EPOCH.
string(TIMESTAMP healer_changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE "${healer_generated_dir}/changelog.Debian"
     "healer (${PROJECT_VERSION}-1) unstable; urgency=medium\n\n"
     "  * healer ${PROJECT_VERSION}, packaged from its source tree by scripts/package.sh.\n\n"
     " -- healer maintainers <maintainers@users.noreply.r-seed-16e49221.example>  "
     "${healer_changelog_date}\n")
execute_process(COMMAND gzip -9nc "${healer_generated_dir}/changelog.Debian"
                OUTPUT_FILE "${healer_generated_dir}/changelog.Debian.gz" COMMAND_ERROR_IS_FATAL ANY)

install(TARGETS healer RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(FILES "${healer_generated_dir}/healer.service" DESTINATION "${healer_systemd_unit_dir}")
install(FILES "${healer_packaging_dir}/config.toml"
        DESTINATION "${CMAKE_INSTALL_FULL_SYSCONFDIR}/healer")
install(FILES "${healer_packaging_dir}/copyright" "${healer_generated_dir}/changelog.Debian.gz"
              "${CMAKE_SOURCE_DIR}/README.md"
              "${CMAKE_SOURCE_DIR}/docs/operations.md" "${CMAKE_SOURCE_DIR}/docs/configuration.md"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}")

# --- man pages and shell completions, generated from the built binary's --help -----------------
# Part of every build: the pages and completions never lag behind the options, and a --help
# that no longer parses (or crashes) fails the build.
if(Python3_Interpreter_FOUND)
  set(healer_cli_docs_stamp "${healer_generated_dir}/cli_docs.stamp")
  add_custom_command(
    OUTPUT "${healer_cli_docs_stamp}"
    COMMAND "${Python3_EXECUTABLE}" "${healer_packaging_dir}/cli_docs.py"
            --healer "$<TARGET_FILE:healer>" --out "${healer_generated_dir}"
            --extra "${healer_packaging_dir}/healer.1.extra"
    COMMAND "${CMAKE_COMMAND}" -E touch "${healer_cli_docs_stamp}"
    DEPENDS healer "${healer_packaging_dir}/cli_docs.py" "${healer_packaging_dir}/healer.1.extra"
    COMMENT "Generating man pages and shell completions from healer --help"
    VERBATIM)
  add_custom_target(healer_cli_docs ALL DEPENDS "${healer_cli_docs_stamp}")

  install(DIRECTORY "${healer_generated_dir}/man/man1/"
          DESTINATION "${CMAKE_INSTALL_MANDIR}/man1" FILES_MATCHING PATTERN "*.1.gz")
  install(FILES "${healer_generated_dir}/completions/healer.bash"
          DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" RENAME healer)
  install(FILES "${healer_generated_dir}/completions/_healer"
          DESTINATION "${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions")
else()
  message(STATUS "python3 not found: no man pages or shell completions (scripts/install-deps.sh)")
endif()

if(HEALER_BUILD_TESTS AND Python3_Interpreter_FOUND)
  set(healer_packaging_tests "${healer_packaging_dir}/tests")
  add_test(NAME packaging.man_pages
           COMMAND "${Python3_EXECUTABLE}" "${healer_packaging_tests}/man_pages_test.py"
                   "$<TARGET_FILE:healer>" "${healer_generated_dir}")
  add_test(NAME packaging.completion_bash
           COMMAND "${healer_packaging_tests}/completion_bash_test.sh"
                   "${healer_generated_dir}/completions/healer.bash" "$<TARGET_FILE:healer>")
  add_test(NAME packaging.completion_zsh
           COMMAND "${healer_packaging_tests}/completion_zsh_test.sh"
                   "${healer_generated_dir}/completions" "$<TARGET_FILE:healer>")
  add_test(NAME packaging.cli_docs_rejects_unknown_help
           COMMAND "${healer_packaging_tests}/cli_docs_format_test.sh"
                   "${healer_packaging_dir}/cli_docs.py")
  add_test(NAME packaging.default_config
           COMMAND "${Python3_EXECUTABLE}" "${healer_packaging_tests}/default_config_test.py"
                   "$<TARGET_FILE:healer>" "${healer_packaging_dir}/config.toml")
  add_test(NAME packaging.unit_file
           COMMAND "${healer_packaging_tests}/unit_file_test.sh" "$<TARGET_FILE:healer>"
                   "${healer_generated_dir}")
  add_test(NAME packaging.sandbox_check
           COMMAND "${healer_packaging_tests}/sandbox_check_test.sh"
                   "${healer_packaging_dir}/sandbox_check.py" "${healer_generated_dir}/healer.service")
  set_tests_properties(
    packaging.man_pages packaging.completion_bash packaging.completion_zsh
    packaging.cli_docs_rejects_unknown_help packaging.default_config packaging.unit_file
    packaging.sandbox_check
    PROPERTIES LABELS packaging TIMEOUT 60 SKIP_RETURN_CODE 77)
endif()

# --- the Debian package -------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME healer)
set(CPACK_PACKAGE_VENDOR "healer maintainers")
set(CPACK_PACKAGE_CONTACT "healer maintainers <maintainers@users.noreply.r-seed-16e49221.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "agentless diagnosis and metrics for Linux servers over pooled SSH")
# CPack puts the summary above this as the first line.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "healer diagnoses Linux servers (Nagios-style checks), collects their metrics
under node_exporter names and runs commands on them, over SSH only: nothing
is installed on the servers. One authenticated connection per server carries
many concurrent commands; host keys are verified strictly.
.
The healer service (healer serve, a hardened systemd unit running as the
healer user) keeps one warm connection pool for scheduled collection and
diagnosis, the CLI, a JSON API and a Prometheus /metrics endpoint on
127.0.0.1:7464.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_OUTPUT_FILE_PREFIX "${CMAKE_BINARY_DIR}/packages")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: the shared libraries' packages, computed by dpkg-shlibdeps (dpkg-dev), plus what the
# maintainer scripts call.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "sqlite3, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${healer_packaging_dir}/conffiles;${healer_packaging_dir}/postinst;${healer_packaging_dir}/prerm;${healer_packaging_dir}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The binary is stripped (the release preset builds with -g). `scripts/package.sh --dbgsym`
# keeps its debug info in a healer-dbgsym .ddeb instead: compressing ~100 MB of DWARF takes
# minutes, which CI does not need.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE OFF)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
# cpack installs without building `all` first (tests and benchmarks are not in the package);
# scripts/package.sh builds what is installed: healer and healer_cli_docs.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
include(CPack)
