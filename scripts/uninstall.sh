#!/bin/sh
# uninstall.sh BUILD PREFIX — removes from PREFIX exactly the files that
# `make install PREFIX=...` (cmake --install BUILD --prefix PREFIX) puts
# there, then the folders of theirs that this leaves empty.  Nothing else
# in PREFIX is touched.
#
# The list is what the install rules themselves install: the build is
# installed into a scratch folder (DESTDIR) and every file found there is
# removed from PREFIX.  Without a build (after `make clean`) it is the
# layout of CMakeLists.txt's install rules, below; tests/e2e/test_install.py
# checks that both agree.
set -e
build=$1
prefix=$2
LAYOUT="bin/cleave include/cleave.h include/cleave_test.h lib/libcleave.so lib/libcleave.a
lib/pkgconfig/cleave.pc"
case "$prefix" in
/*) ;;
*) echo "uninstall: PREFIX must be an absolute path, not '$prefix'" >&2
   exit 2 ;;
esac
list=$(mktemp)
stage=$(mktemp -d)
trap 'rm -rf "$stage" "$list"' EXIT
if [ -f "$build/cmake_install.cmake" ]; then
	DESTDIR="$stage" cmake --install "$build" --prefix "$prefix" >/dev/null
	(cd "$stage$prefix" && find . ! -type d | sed 's|^\./||' | sort) >"$list"
else
	echo "uninstall: no build in '$build': removing the install layout" >&2
	for f in $LAYOUT; do echo "$f"; done >"$list"
fi
while IFS= read -r f; do
	if [ -e "$prefix/$f" ] || [ -L "$prefix/$f" ]; then
		rm -f "$prefix/$f"
		echo "-- Removed: $prefix/$f"
	fi
done <"$list"
# the folders of those files, deepest first, when nothing else is in them
sed -n 's|/[^/]*$||p' "$list" | sort -u | while IFS= read -r d; do
	while [ -n "$d" ] && [ "$d" != "." ]; do
		echo "$d"
		case "$d" in */*) d=${d%/*} ;; *) d= ;; esac
	done
done | sort -ru | while IFS= read -r d; do
	rmdir "$prefix/$d" 2>/dev/null || true
done
