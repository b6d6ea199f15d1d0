build/obj/services/receiver/receiver.o: services/receiver/receiver.c \
 services/receiver/receiver.h services/common/config.h \
 services/common/log.h services/common/spool.h services/receiver/dicom.h
services/receiver/receiver.h:
services/common/config.h:
services/common/log.h:
services/common/spool.h:
services/receiver/dicom.h:
