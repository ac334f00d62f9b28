/* Placeholder until the CLI lands. */
#include <stdio.h>
#include "cleave.h"
int main(void)
{
	printf("cleave %s\n", CLEAVE_VERSION);
	return 0;
}
