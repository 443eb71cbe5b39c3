/*
 * The credentials of a Unix domain socket's peer, as the kernel recorded them when the peer
 * called connect() (or socketpair()): getsockopt(SO_PEERCRED). Node has no API for them, and
 * nothing the peer sends can change them, which is why workload attestation reads them here.
 *
 * peerCredentials(fd) -> { pid, uid, gid }
 * peerExecutable(fd)  -> the path /proc/<pid>/exe names for the peer's pid, or null when it cannot
 *                        be read or the peer process is gone. The peer is held by a pidfd
 *                        (SO_PEERPIDFD, Linux 6.5) from before the read until after it, so a pid
 *                        the kernel gave to another process after the peer exited is never read.
 *
 * Both throw an Error whose `code` says why:
 *   ERR_PEER_CREDENTIALS_ARGUMENT     fd is not a non-negative integer
 *   ERR_PEER_CREDENTIALS_NOT_SOCKET   fd is closed or not a socket (EBADF, ENOTSOCK)
 *   ERR_PEER_CREDENTIALS_NOT_UNIX     the socket is not AF_UNIX: the kernel would still answer
 *                                     SO_PEERCRED there, with pid 0 and uid/gid -1, which is
 *                                     no caller at all
 *   ERR_PEER_CREDENTIALS_NONE         an AF_UNIX socket with no peer (listening, not connected),
 *                                     or a peer whose pid this process's pid namespace cannot see
 *   ERR_PEER_CREDENTIALS_FAILED       a system call failed otherwise (the message has strerror)
 *   ERR_PEER_CREDENTIALS_UNSUPPORTED  not Linux: SO_PEERCRED is Linux's
 *   ERR_PEER_PIDFD_UNSUPPORTED        (peerExecutable) the kernel has no SO_PEERPIDFD (before 6.5)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <node_api.h>

#ifdef __linux__
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

/* Older C libraries' headers lack it; its value is the generic one, which these architectures use
   (alpha, mips, parisc and sparc number socket options their own way: there, no pidfd). */
#if !defined(SO_PEERPIDFD) && !defined(__alpha__) && !defined(__mips__) && !defined(__hppa__) && \
    !defined(__sparc__)
#define SO_PEERPIDFD 77
#endif
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

/* The one argument, a file descriptor; -1 (with an exception pending) when it is not one. */
static int fd_argument(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  napi_valuetype type = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  double fd_number = -1;
  if (type != napi_number || napi_get_value_double(env, argv[0], &fd_number) != napi_ok ||
      !(fd_number >= 0 && fd_number <= 2147483647.0) || fd_number != (double)(int)fd_number) {
    throw_coded(env, "ERR_PEER_CREDENTIALS_ARGUMENT", "fd must be a non-negative integer");
    return -1;
  }
  return (int)fd_number;
}

#ifdef __linux__
static void throw_errno(napi_env env, const char* code, const char* call, int err) {
  char message[256];
  char buffer[128];
  /* GNU strerror_r returns the message (possibly not in buffer). */
  const char* text = strerror_r(err, buffer, sizeof buffer);
  snprintf(message, sizeof message, "%s failed: %s (errno %d)", call, text, err);
  throw_coded(env, code, message);
}

static const char* socket_error_code(int err) {
  return (err == EBADF || err == ENOTSOCK) ? "ERR_PEER_CREDENTIALS_NOT_SOCKET" : "ERR_PEER_CREDENTIALS_FAILED";
}

/* The peer's credentials into *out; 0, or -1 with an exception pending. */
static int read_credentials(napi_env env, int fd, struct ucred* out) {
  int domain = 0;
  socklen_t domain_length = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_length) != 0) {
    int err = errno;
    throw_errno(env, socket_error_code(err), "getsockopt(SO_DOMAIN)", err);
    return -1;
  }
  if (domain != AF_UNIX) {
    char message[128];
    snprintf(message, sizeof message, "the socket is not a Unix domain socket (address family %d)", domain);
    throw_coded(env, "ERR_PEER_CREDENTIALS_NOT_UNIX", message);
    return -1;
  }

  /* A listening socket answers SO_PEERCRED with its own credentials, taken at listen(): that is
     this process, not a caller. */
  int listening = 0;
  socklen_t listening_length = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_length) != 0) {
    int err = errno;
    throw_errno(env, socket_error_code(err), "getsockopt(SO_ACCEPTCONN)", err);
    return -1;
  }
  if (listening) {
    throw_coded(env, "ERR_PEER_CREDENTIALS_NONE", "the socket is listening: it has no peer");
    return -1;
  }

  socklen_t length = sizeof *out;
  memset(out, 0, sizeof *out);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, out, &length) != 0) {
    int err = errno;
    throw_errno(env, socket_error_code(err), "getsockopt(SO_PEERCRED)", err);
    return -1;
  }
  /* An unconnected AF_UNIX socket has no peer: the kernel answers pid 0 and uid/gid -1. A peer
     in a pid namespace this process cannot see has pid 0 too: no pid, no /proc/<pid>/exe. */
  if (length != sizeof *out || out->pid <= 0 || out->uid == (uid_t)-1 || out->gid == (gid_t)-1) {
    throw_coded(env, "ERR_PEER_CREDENTIALS_NONE",
                "the socket has no peer credentials (it is not connected, or the peer's pid "
                "is in a pid namespace this process cannot see)");
    return -1;
  }
  return 0;
}

static int set_int(napi_env env, napi_value object, const char* name, double value) {
  napi_value number;
  return napi_create_double(env, value, &number) == napi_ok &&
         napi_set_named_property(env, object, name, number) == napi_ok;
}
#endif

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  int fd = fd_argument(env, info);
  if (fd < 0) return NULL;
#ifdef __linux__
  struct ucred credentials;
  if (read_credentials(env, fd, &credentials) != 0) return NULL;
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

static napi_value peer_executable(napi_env env, napi_callback_info info) {
  int fd = fd_argument(env, info);
  if (fd < 0) return NULL;
#if defined(__linux__) && defined(SO_PEERPIDFD)
  struct ucred credentials;
  if (read_credentials(env, fd, &credentials) != 0) return NULL;
  napi_value none;
  napi_get_null(env, &none);

  int pidfd = -1;
  socklen_t pidfd_length = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pidfd_length) != 0) {
    int err = errno;
    if (err == ENOPROTOOPT) {
      throw_coded(env, "ERR_PEER_PIDFD_UNSUPPORTED", "this kernel has no SO_PEERPIDFD (Linux 6.5)");
      return NULL;
    }
    /* EINVAL (or ESRCH): the peer's process has exited and been reaped, so its pid may name another. */
    if (err == EINVAL || err == ESRCH) return none;
    throw_errno(env, socket_error_code(err), "getsockopt(SO_PEERPIDFD)", err);
    return NULL;
  }

  char proc_path[64];
  char path[PATH_MAX + 1];
  snprintf(proc_path, sizeof proc_path, "/proc/%d/exe", (int)credentials.pid);
  ssize_t n = readlink(proc_path, path, PATH_MAX);

  /* The pidfd polls readable once the process has exited. Still running now, it ran throughout
     the readlink, so the pid was still its own. */
  struct pollfd exited = {.fd = pidfd, .events = POLLIN, .revents = 0};
  int polled = poll(&exited, 1, 0);
  int poll_error = errno;
  close(pidfd);
  if (polled < 0) {
    throw_errno(env, "ERR_PEER_CREDENTIALS_FAILED", "poll(pidfd)", poll_error);
    return NULL;
  }
  if (polled > 0 || n <= 0 || n > PATH_MAX) return none;
  path[n] = '\0';

  napi_value result;
  if (napi_create_string_utf8(env, path, (size_t)n, &result) != napi_ok) return NULL;
  return result;
#elif defined(__linux__)
  return throw_coded(env, "ERR_PEER_PIDFD_UNSUPPORTED", "SO_PEERPIDFD is not known on this architecture");
#else
  return throw_coded(env, "ERR_PEER_CREDENTIALS_UNSUPPORTED",
                     "SO_PEERCRED is Linux's: peer credentials are not read on this platform");
#endif
}

static int export_function(napi_env env, napi_value exports, const char* name, napi_callback callback) {
  napi_value function;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &function) == napi_ok &&
         napi_set_named_property(env, exports, name, function) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!export_function(env, exports, "peerCredentials", peer_credentials) ||
      !export_function(env, exports, "peerExecutable", peer_executable)) {
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
