/*
 * train.h: the private header of lib/train/: the trainer (train.c), optimizers (optim.c),
 * losses (loss.c) and the strategy graft-plan picks (plan.c).  They stand on the engine
 * (training nets) and on surgery (cuts, for the strategy's blocks).
 */
#ifndef GRAFT_TRAIN_H
#define GRAFT_TRAIN_H

#include "surgery/surgery.h"

#endif
