build/obj/services/common/config.o: services/common/config.c \
 services/common/config.h services/common/log.h
services/common/config.h:
services/common/log.h:
