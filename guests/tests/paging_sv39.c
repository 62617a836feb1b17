/* paging_sv39: Sv39 translation and protection (see paging_common.h). */
#define LEVELS 3
#include "paging_common.h"
