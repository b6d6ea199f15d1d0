build/obj/services/common/log.o: services/common/log.c \
 services/common/log.h
services/common/log.h:
