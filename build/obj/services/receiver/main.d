build/obj/services/receiver/main.o: services/receiver/main.c \
 services/common/config.h services/common/log.h services/receiver/dicom.h \
 services/common/spool.h services/receiver/receiver.h
services/common/config.h:
services/common/log.h:
services/receiver/dicom.h:
services/common/spool.h:
services/receiver/receiver.h:
