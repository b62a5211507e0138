# Sourced by scripts/ensure-*.sh: what `make test` does for a Debian package the tests need.
#
# apt_install INSTALLING MISSING PACKAGE [APT-GET OPTIONS...]
#   As root with apt-get: say INSTALLING, install PACKAGE quietly, return 0.
#   Otherwise (we may not install): say MISSING on stderr, return 1; the tests that need the
#   package then fail, naming it.
apt_install() {
  local installing="$1" missing="$2"
  shift 2
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "$installing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    return 0
  fi
  echo "$missing" >&2
  return 1
}
