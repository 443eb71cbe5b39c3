{
  "targets": [
    {
      "target_name": "peer_credentials",
      "sources": ["native/peer_credentials.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
