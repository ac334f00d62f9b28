# Writes OUT, a C file holding every file of DIR (the dashboard's pages,
# scripts and styles) as a byte array, and the table ui.c serves them from
# (src/server/ui_files.h).  Run at build time:
#   cmake -DDIR=src/server/ui -DOUT=BUILD/ui_files.c -P embed.cmake
# Only the files named *.html, *.js and *.css are taken.
file(GLOB files RELATIVE ${DIR} ${DIR}/*.html ${DIR}/*.js ${DIR}/*.css)
list(SORT files)
# sixteen bytes a line (CMake's regular expressions have no {n})
string(REPEAT "0x..," 16 line)
set(arrays "")
set(table "")
set(i 0)
foreach(f ${files})
  file(READ ${DIR}/${f} hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR n "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REGEX REPLACE "(${line})" "\\1\n\t" hex "${hex}")
  string(APPEND arrays "/* ${f} */\nstatic const unsigned char f${i}[] = {\n\t${hex}0x00};\n\n")
  string(APPEND table "\t{\"${f}\", f${i}, ${n}},\n")
  math(EXPR i "${i} + 1")
endforeach()
set(text "/* Written by src/server/ui/embed.cmake from src/server/ui/: do not edit. */\n#include \"ui_files.h\"\n\n${arrays}const cl_ui_file cl_ui_files[] = {\n${table}\t{NULL, NULL, 0},\n};\n")
file(WRITE ${OUT} "${text}")
