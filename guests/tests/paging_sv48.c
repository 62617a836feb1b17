/* paging_sv48: Sv48 translation and protection (see paging_common.h). */
#define LEVELS 4
#include "paging_common.h"
