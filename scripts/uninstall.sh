#!/bin/sh
# uninstall.sh BUILD PREFIX — removes from PREFIX exactly the files that
# `make install PREFIX=...` (cmake --install BUILD --prefix PREFIX) puts
# there, then the folders of theirs that this leaves empty.  The list is
# what the install rules themselves install: the build is installed into
# a scratch folder (DESTDIR) and every file found there is removed from
# PREFIX.  Nothing else in PREFIX is touched.
set -e
build=$1
prefix=$2
case "$prefix" in
/*) ;;
*) echo "uninstall: PREFIX must be an absolute path, not '$prefix'" >&2
   exit 2 ;;
esac
if [ ! -f "$build/cmake_install.cmake" ]; then
	echo "uninstall: no build in '$build' to list what install puts in" \
	     "$prefix (make build first, or give BUILD=DIR)" >&2
	exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage" cmake --install "$build" --prefix "$prefix" >/dev/null
cd "$stage$prefix"
find . ! -type d | sort | while IFS= read -r f; do
	f=${f#./}
	if [ -e "$prefix/$f" ] || [ -L "$prefix/$f" ]; then
		rm -f "$prefix/$f"
		echo "-- Removed: $prefix/$f"
	fi
done
find . -mindepth 1 -depth -type d | while IFS= read -r d; do
	rmdir "$prefix/${d#./}" 2>/dev/null || true
done
