/*
 * The credentials of a Unix domain socket's peer, as the kernel recorded them when the peer
 * called connect() (or socketpair()): getsockopt(SO_PEERCRED). Node has no API for them, and
 * nothing the peer sends can change them, which is why workload attestation reads them here.
 *
 * peerCredentials(fd) -> { pid, uid, gid }, or throws an Error whose `code` says why:
 *   ERR_PEER_CREDENTIALS_ARGUMENT     fd is not a non-negative integer
 *   ERR_PEER_CREDENTIALS_NOT_SOCKET   fd is closed or not a socket (EBADF, ENOTSOCK)
 *   ERR_PEER_CREDENTIALS_NOT_UNIX     the socket is not AF_UNIX: the kernel would still answer
 *                                     SO_PEERCRED there, with pid 0 and uid/gid -1, which is
 *                                     no caller at all
 *   ERR_PEER_CREDENTIALS_NONE         an AF_UNIX socket with no peer (listening, not connected),
 *                                     or a peer whose pid this process's pid namespace cannot see
 *   ERR_PEER_CREDENTIALS_FAILED       getsockopt failed otherwise (the message has strerror)
 *   ERR_PEER_CREDENTIALS_UNSUPPORTED  not Linux: SO_PEERCRED is Linux's
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <node_api.h>

#ifdef __linux__
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#endif

static napi_value throw_coded(napi_env env, const char* code, const char* message) {
  napi_value code_value, message_value, error;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok ||
      napi_create_error(env, code_value, message_value, &error) != napi_ok) {
    napi_throw_error(env, code, message);
    return NULL;
  }
  napi_throw(env, error);
  return NULL;
}

#ifdef __linux__
static napi_value throw_errno(napi_env env, const char* code, const char* call, int err) {
  char message[256];
  char buffer[128];
  /* GNU strerror_r returns the message (possibly not in buffer). */
  const char* text = strerror_r(err, buffer, sizeof buffer);
  snprintf(message, sizeof message, "%s failed: %s (errno %d)", call, text, err);
  return throw_coded(env, code, message);
}

static int set_int(napi_env env, napi_value object, const char* name, double value) {
  napi_value number;
  return napi_create_double(env, value, &number) == napi_ok &&
         napi_set_named_property(env, object, name, number) == napi_ok;
}
#endif

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

  napi_valuetype type = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  double fd_number = -1;
  if (type != napi_number || napi_get_value_double(env, argv[0], &fd_number) != napi_ok ||
      !(fd_number >= 0 && fd_number <= 2147483647.0) || fd_number != (double)(int)fd_number) {
    return throw_coded(env, "ERR_PEER_CREDENTIALS_ARGUMENT", "fd must be a non-negative integer");
  }

#ifdef __linux__
  int fd = (int)fd_number;

  int domain = 0;
  socklen_t domain_length = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_length) != 0) {
    int err = errno;
    const char* code = (err == EBADF || err == ENOTSOCK) ? "ERR_PEER_CREDENTIALS_NOT_SOCKET"
                                                         : "ERR_PEER_CREDENTIALS_FAILED";
    return throw_errno(env, code, "getsockopt(SO_DOMAIN)", err);
  }
  if (domain != AF_UNIX) {
    char message[128];
    snprintf(message, sizeof message, "the socket is not a Unix domain socket (address family %d)", domain);
    return throw_coded(env, "ERR_PEER_CREDENTIALS_NOT_UNIX", message);
  }

  /* A listening socket answers SO_PEERCRED with its own credentials, taken at listen(): that is
     this process, not a caller. */
  int listening = 0;
  socklen_t listening_length = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_length) != 0) {
    return throw_errno(env, "ERR_PEER_CREDENTIALS_FAILED", "getsockopt(SO_ACCEPTCONN)", errno);
  }
  if (listening) {
    return throw_coded(env, "ERR_PEER_CREDENTIALS_NONE", "the socket is listening: it has no peer");
  }

  struct ucred credentials;
  socklen_t length = sizeof credentials;
  memset(&credentials, 0, sizeof credentials);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    int err = errno;
    const char* code = (err == EBADF || err == ENOTSOCK) ? "ERR_PEER_CREDENTIALS_NOT_SOCKET"
                                                         : "ERR_PEER_CREDENTIALS_FAILED";
    return throw_errno(env, code, "getsockopt(SO_PEERCRED)", err);
  }
  /* An unconnected AF_UNIX socket has no peer: the kernel answers pid 0 and uid/gid -1. A peer
     in a pid namespace this process cannot see has pid 0 too: no pid, no /proc/<pid>/exe. */
  if (length != sizeof credentials || credentials.pid <= 0 || credentials.uid == (uid_t)-1 ||
      credentials.gid == (gid_t)-1) {
    return throw_coded(env, "ERR_PEER_CREDENTIALS_NONE",
                       "the socket has no peer credentials (it is not connected, or the peer's pid "
                       "is in a pid namespace this process cannot see)");
  }

  napi_value result;
  if (napi_create_object(env, &result) != napi_ok) return NULL;
  if (!set_int(env, result, "pid", (double)credentials.pid) ||
      !set_int(env, result, "uid", (double)credentials.uid) ||
      !set_int(env, result, "gid", (double)credentials.gid)) {
    return NULL;
  }
  return result;
#else
  return throw_coded(env, "ERR_PEER_CREDENTIALS_UNSUPPORTED",
                     "SO_PEERCRED is Linux's: peer credentials are not read on this platform");
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value function;
  if (napi_create_function(env, "peerCredentials", NAPI_AUTO_LENGTH, peer_credentials, NULL,
                           &function) != napi_ok ||
      napi_set_named_property(env, exports, "peerCredentials", function) != napi_ok) {
    return NULL;
  }
  napi_value supported;
#ifdef __linux__
  napi_get_boolean(env, true, &supported);
#else
  napi_get_boolean(env, false, &supported);
#endif
  napi_set_named_property(env, exports, "supported", supported);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
