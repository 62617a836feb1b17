/* paging_sv57: Sv57 translation and protection (see paging_common.h). */
#define LEVELS 5
#include "paging_common.h"
