/*
 * report.h: the private header of lib/report/: what graft tells its users about runs
 * (plot.c: learning curves as SVG).  It reads logs, not models, and needs only the
 * base layer.
 */
#ifndef GRAFT_REPORT_H
#define GRAFT_REPORT_H

#include "base/base.h"

#endif
