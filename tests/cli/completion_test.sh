#!/usr/bin/env bash
# cyto completion bash|zsh|fish: generated from the CLI's command tree. Runs the bash
# script for real (COMP_WORDS -> COMPREPLY), checks zsh's and fish's syntax with the shells
# themselves when installed, and that an unknown shell is refused.
set -euo pipefail
cyto=${1:?usage: completion_test.sh CYTO}
fail=0
check() { # check DESCRIPTION COND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

script=$("$cyto" completion bash)
# shellcheck disable=SC1090
source <(printf '%s\n' "$script")
complete_words() { # complete_words WORD... (the last one is being typed)
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _cyto
  printf '%s\n' "${COMPREPLY[@]}"
}
has() { grep -qx -- "$1"; }
top=$(complete_words cyto '')
check "top level lists the verbs" has discover <<<"$top"
check "top level lists cell" has cell <<<"$top"
check "top level lists completion" has completion <<<"$top"
check "prefix ne -> network" test "$(complete_words cyto ne)" = network
check "cell -> allocate" has allocate <<<"$(complete_words cyto cell '')"
check "cell st -> start, stop" test "$(complete_words cyto cell st | sort | tr '\n' ' ')" = "start stop "
check "options of cell start" has --shell <<<"$(complete_words cyto cell start --s)"
# A value option's argument is not taken for a command: 'cell' here is a socket path.
check "--socket VALUE skipped" has allocate <<<"$(complete_words cyto --socket /tmp/x cell '')"
check "--socket's value is not a verb" \
  test -z "$(complete_words cyto --socket cell al)"
# Every verb of --help appears (the script and the tree agree).
verbs=$("$cyto" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ {print $1}')
check "--help lists verbs" test "$(wc -w <<<"$verbs")" -gt 10
for verb in $verbs; do
  check "verb $verb from --help is completed" has "$verb" <<<"$top"
done

if command -v zsh >/dev/null; then
  check "zsh script parses" zsh -n <("$cyto" completion zsh)
  # Defines _cyto when loaded (compdef stubbed: no compinit here).
  check "zsh defines _cyto" zsh -c "compdef() { :; }; source <($cyto completion zsh); whence -w _cyto | grep -q function"
else
  echo "skip: zsh not installed"
fi
if command -v fish >/dev/null; then
  fish_home=$(mktemp -d)
  trap 'rm -rf -- "$fish_home"' EXIT
  check "fish script parses" fish --no-execute <("$cyto" completion fish)
  out=$(HOME=$fish_home fish -c "source (\"$cyto\" completion fish | psub); complete -C 'cyto cell st'")
  check "fish completes cell st -> start" grep -q '^start' <<<"$out"
  out=$(HOME=$fish_home fish -c "source (\"$cyto\" completion fish | psub); complete -C 'cyto ne'")
  check "fish completes ne -> network" grep -q '^network' <<<"$out"
  out=$(HOME=$fish_home fish -c "source (\"$cyto\" completion fish | psub); complete -C 'cyto cell start --sh'")
  check "fish completes cell start --sh -> --shell" grep -q '^--shell' <<<"$out"
else
  echo "skip: fish not installed"
fi

if err=$("$cyto" completion tcsh 2>&1 >/dev/null); then
  check "tcsh refused" false
else
  check "tcsh refused with a message" grep -q 'tcsh' <<<"$err"
fi
exit $fail
