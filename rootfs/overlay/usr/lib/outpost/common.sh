# Sourced by the box's scripts (provision, update, health-gate): what they
# share. POSIX sh: the image has no sed or awk.

state=/data/firmware # the firmware's records, for the status API

# The root slot this boot runs (a or b), as GRUB put it on the command line.
booted_slot() {
	tr ' ' '\n' < /proc/cmdline | grep '^rauc\.slot=' | cut -d= -f2
}

# record NAME KEY=VALUE...: writes $state/NAME, a small key=value file,
# with the time added, replaced atomically.
record() {
	f=$state/$1
	shift
	mkdir -p "$state"
	printf '%s\n' "$@" "time=$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$f.new" &&
		sync "$f.new" && mv -f "$f.new" "$f"
}

# with_stick COMMAND [ARGS]: runs COMMAND with the USB stick labelled
# OUTPOST mounted read-only at $stick ($dev its device), then unmounts it.
# COMMAND's status; 0 when there is no stick. vfat only (no links, devices
# or owners to trust), and nothing on it runs.
with_stick() {
	dev=/dev/disk/by-label/OUTPOST
	stick=/run/outpost-stick
	[ -e "$dev" ] || return 0
	mkdir -p "$stick"
	mount -t vfat -o ro,nosuid,nodev,noexec "$dev" "$stick" || return 0
	rc=0
	"$@" || rc=$?
	umount "$stick"
	return $rc
}
