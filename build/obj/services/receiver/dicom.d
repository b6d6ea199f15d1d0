build/obj/services/receiver/dicom.o: services/receiver/dicom.cc \
 services/receiver/dicom.h services/common/spool.h
services/receiver/dicom.h:
services/common/spool.h:
