# Shell functions for the scripts' command lines. Source it; it defines functions only.

# print_help SCRIPT: prints SCRIPT's header comment (line 2 up to `set -euo`) to stderr,
# without the comment marks, and exits 0: the script's --help.
print_help() {
	sed -n '2,/^set -euo/p' "$1" | sed '$d; s/^# \{0,1\}//' >&2
	exit 0
}

# collector_binary_arg NAME PATH [FLAG]: prints PATH made absolute when it is an executable;
# else says as NAME that FLAG (default --binary) needs one and exits 2 (a bad command line;
# under `set -e` a `var=$(…)` that calls it ends the script with 2).
collector_binary_arg() {
	[ -x "${2-}" ] || {
		echo "$1: ${3:---binary} needs an executable collector" >&2
		exit 2
	}
	realpath "$2"
}
