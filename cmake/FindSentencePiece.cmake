# Finds the sentencepiece C++ library that scripts/install-sentencepiece.sh builds against the
# system protobuf, and defines sentencepiece::sentencepiece (static, linked with that protobuf).
# Only its prefix is searched: a system libsentencepiece (Debian's embeds its own protobuf and
# crashes binaries that also use gRPC's) must never be picked up by accident.
#
# Input: SENTENCEPIECE_ROOT (default: the prefix the install script uses; keep the version equal
# to the script's).
set(SENTENCEPIECE_ROOT "/opt/switchyard-deps/sentencepiece-0.1.97"
  CACHE PATH "Prefix of the sentencepiece build from scripts/install-sentencepiece.sh")

find_path(SentencePiece_INCLUDE_DIR sentencepiece_processor.h
  PATHS "${SENTENCEPIECE_ROOT}/include" NO_DEFAULT_PATH)
find_library(SentencePiece_LIBRARY NAMES libsentencepiece.a
  PATHS "${SENTENCEPIECE_ROOT}/lib" NO_DEFAULT_PATH)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(SentencePiece
  REQUIRED_VARS SentencePiece_LIBRARY SentencePiece_INCLUDE_DIR
  REASON_FAILURE_MESSAGE
    "not in ${SENTENCEPIECE_ROOT}: run scripts/install-deps.sh (it builds sentencepiece with \
scripts/install-sentencepiece.sh), or point -DSENTENCEPIECE_ROOT at such a build")

if(SentencePiece_FOUND AND NOT TARGET sentencepiece::sentencepiece)
  find_package(Protobuf REQUIRED)
  find_package(Threads REQUIRED)
  add_library(sentencepiece::sentencepiece STATIC IMPORTED)
  # The full libprotobuf, which contains the lite runtime the generated code needs: one
  # protobuf runtime per binary, the one gRPC uses.
  set_target_properties(sentencepiece::sentencepiece PROPERTIES
    IMPORTED_LOCATION "${SentencePiece_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SentencePiece_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "protobuf::libprotobuf;Threads::Threads")
endif()
mark_as_advanced(SentencePiece_INCLUDE_DIR SentencePiece_LIBRARY)
