/*
 * unit_cloud: the cloud's canned replies, for the tests of what the uplink
 * makes of them (test_http_*.c, test_stow_*.c): the bodies Orthanc 1.10.1
 * + DICOMweb 1.7 (behind nginx) really sent, from docs/notes-orthanc.md,
 * verbatim (the placeholders <SOP-n>, <STUDY-x> and PORT included), and
 * nginx's page when Orthanc is down.
 */
#ifndef OP_UNIT_CLOUD_H
#define OP_UNIT_CLOUD_H

/* Compact, as the notes show them; each comment gives the headers Orthanc
 * (behind nginx) sent with the body, pretty-printed with tabs. */

/* HTTP/1.1 200 OK | Content-Type: application/dicom+json | Content-Length: 1466 */
#define ORTHANC_200_ALL_GOOD                                                                       \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-1>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-1>\"],\"vr\":\"UR\"}},{\"00081150\":{\"Value\":[\"1.2.840.1"     \
	"0008.5.1.4.1.1.4\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-2>\"],\"vr\":\"UI"     \
	"\"},\"00081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-MR>/se"     \
	"ries/<SERIES-MR>/instances/<SOP-2>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 400 Bad Request | Content-Length: 893 */
#define ORTHANC_400_GARBAGE_PART                                                                   \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-3>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-3>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 400 Bad Request | Content-Length: 1280 */
#define ORTHANC_400_NO_SERIES_UID                                                                  \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5.1.4.1.1.2\"],\"vr\":\"UI\"},"      \
	"\"00081155\":{\"Value\":[\"<SOP-5>\"],\"vr\":\"UI\"},\"00081197\":{\"Value\":[49152]"     \
	",\"vr\":\"US\"}}],\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":["     \
	"\"1.2.840.10008.5.1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-6>\"],"     \
	"\"vr\":\"UI\"},\"00081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<S"     \
	"TUDY-CT>/series/<SERIES-CT>/instances/<SOP-6>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 200 OK | Content-Type: application/dicom+json | Content-Length: 297 */
#define ORTHANC_200_REFUSED_ALONE                                                                  \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"vr\":\"SQ\"}}"

/* HTTP/1.1 200 OK | Content-Type: application/dicom+json | Content-Length: 893 */
#define ORTHANC_200_GOOD_REFUSED_GOOD                                                              \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-7>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-7>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 500 Internal Server Error | Keep-Alive: timeout=1 | Content-Length: 319 */
#define ORTHANC_REST_500                                                                           \
	"{\"Details\":\"[string \\\"line\\\"]:9: refused by the Outpost test cloud: PatientID"     \
	" REFUSE-ME\",\"HttpError\":\"Internal Server Error\",\"HttpStatus\":500,\"Message\":"     \
	"\"Cannot execute a Lua command\",\"Method\":\"POST\",\"OrthancError\":\"Cannot execu"     \
	"te a Lua command\",\"OrthancStatus\":2031,\"Uri\":\"/instances\"}"

/* HTTP/1.1 200 OK | Content-Type: application/dicom+json | Content-Length: 893 */
#define ORTHANC_200_DROPPED                                                                        \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-8>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-8>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 415 Unsupported Media Type | Content-Length: 224 */
#define ORTHANC_415                                                                                \
	"{\"HttpError\":\"Unsupported Media Type\",\"HttpStatus\":415,\"Message\":\"Unsupport"     \
	"ed media type\",\"Method\":\"POST\",\"OrthancError\":\"Unsupported media type\",\"Or"     \
	"thancStatus\":3000,\"Uri\":\"/dicom-web/studies\"}"

/* HTTP/1.1 409 Conflict | Content-Length: 1275 */
#define ORTHANC_409_STUDY_MISMATCH                                                                 \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-MR>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5.1.4.1.1.2\"],\"vr\":\"UI\"},"      \
	"\"00081155\":{\"Value\":[\"<SOP-9>\"],\"vr\":\"UI\"},\"00081197\":{\"Value\":[272],"      \
	"\"vr\":\"US\"}}],\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":["      \
	"\"1.2.840.10008.5.1.4.1.1.4\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-10>\"]"     \
	",\"vr\":\"UI\"},\"00081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<"     \
	"STUDY-MR>/series/<SERIES-MR>/instances/<SOP-10>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

/* HTTP/1.1 200 OK | Content-Type: application/dicom+json | Content-Length: 149 */
#define ORTHANC_200_WRONG_PART_TYPE                                                                \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081198\":{\"vr\":\"SQ\""     \
	"},\"00081199\":{\"vr\":\"SQ\"}}"

/* nginx's page when Orthanc is down (CRLF line ends: 150 bytes). */
#define NGINX_502                                                                                  \
	"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"                      \
	"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"              \
	"</body>\r\n</html>\r\n"

#endif
