# Sourced by install.sh (and its test): `step WHAT COMMAND...` runs a command
# that prints, on its last line, where it put what it fetched or built.
# Its failure ends the install, naming the step: a test that needs the piece
# would otherwise fail later for a reason the log no longer shows (an echo of
# a failed command substitution succeeds).
step() {
  local what=$1 out
  shift
  if ! out=$("$@"); then
    echo "install: FAILED to get $what ($*); its messages are above" >&2
    exit 1
  fi
  echo "install: $what at ${out##*$'\n'}"
}
