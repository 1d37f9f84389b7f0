{
  "targets": [
    {
      "target_name": "seqpacket",
      "sources": ["native/seqpacket.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags!": ["-O3"]
    }
  ]
}
