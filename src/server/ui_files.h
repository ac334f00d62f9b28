/*
 * ui_files.h — the dashboard's files, embedded in the program at build
 * time: src/server/ui/embed.cmake writes BUILD/ui_files.c from the files
 * of src/server/ui/, which ui.c serves from memory.
 */
#ifndef CL_SERVER_UI_FILES_H
#define CL_SERVER_UI_FILES_H

#include <stddef.h>

typedef struct cl_ui_file {
	const char *name;          /* the file's name in src/server/ui/ */
	const unsigned char *data; /* its bytes, static */
	size_t len;
} cl_ui_file;

/* Every file, in name order; ends with a { NULL } entry. */
extern const cl_ui_file cl_ui_files[];

#endif
