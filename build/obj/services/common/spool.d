build/obj/services/common/spool.o: services/common/spool.c \
 services/common/spool.h services/common/log.h
services/common/spool.h:
services/common/log.h:
