/*
 * seqpacket.node: the transport under the Node.js client of beneathd.
 *
 * Node's net module speaks SOCK_STREAM only and cannot carry SCM_RIGHTS, and
 * beneathd answers over AF_UNIX SOCK_SEQPACKET with file descriptors attached.
 * So this addon exposes the few syscalls the client needs, all nonblocking, and
 * a libuv poll handle to learn when to retry them.  Everything stays on the
 * loop thread: no threads, no async work, no copies of state between calls.
 * Framing, request ids and fd ownership are the TypeScript client's job.
 */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The daemon never sends more than a handful of fds in one reply; 16 leaves
 * room, and anything beyond it is cut by the kernel and flagged MSG_CTRUNC. */
#define MAX_FDS 16
#define MAX_RECV (16u << 20)
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* ---- errors ------------------------------------------------------------ */

/* Called when an N-API call itself failed.  Usually it already left a JS
 * exception pending; if not, throw one so the caller never sees a silent
 * undefined. */
static void throw_napi_failure(napi_env env) {
  const napi_extended_error_info *info = NULL;
  const char *msg = "N-API call failed";
  bool pending = false;
  /* Read the message first: the next N-API call overwrites the info. */
  if (napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message)
    msg = info->error_message;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_error(env, NULL, msg);
}

#define CHECK(env, call)                                                       \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      throw_napi_failure(env);                                                 \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

/* An Error shaped like Node's own system errors (code, negative errno, syscall,
 * address, message "connect ENOENT /run/x.sock") so the client can treat ours
 * and net's the same way.  err is a positive errno value. */
static napi_value make_sys_error(napi_env env, int err, const char *syscall,
                                 const char *addr, size_t addrlen) {
  char code[64], head[160], *msg;
  napi_value e = NULL, vcode, vmsg, v;
  size_t n;

  /* libuv's codes are -errno on Unix, and its names are the ones Node uses. */
  uv_err_name_r(-err, code, sizeof code);
  n = (size_t)snprintf(head, sizeof head, "%s %s", syscall, code);
  if (n >= sizeof head) n = sizeof head - 1;
  if (!(msg = malloc(n + 1 + (addr ? addrlen : 0)))) return NULL;
  memcpy(msg, head, n);
  if (addr) {
    msg[n++] = ' ';
    memcpy(msg + n, addr, addrlen); /* memcpy: an abstract name starts with NUL */
    n += addrlen;
  }
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &vcode) != napi_ok ||
      napi_create_string_utf8(env, msg, n, &vmsg) != napi_ok ||
      napi_create_error(env, vcode, vmsg, &e) != napi_ok ||
      napi_create_int32(env, -err, &v) != napi_ok ||
      napi_set_named_property(env, e, "errno", v) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, e, "syscall", v) != napi_ok ||
      (addr && (napi_create_string_utf8(env, addr, addrlen, &v) != napi_ok ||
                napi_set_named_property(env, e, "address", v) != napi_ok)))
    e = NULL;
  free(msg);
  return e;
}

static napi_value throw_sys_error(napi_env env, int err, const char *syscall,
                                  const char *addr, size_t addrlen) {
  napi_value e = make_sys_error(env, err, syscall, addr, addrlen);
  if (e) napi_throw(env, e);
  else throw_napi_failure(env);
  return NULL;
}

/* ---- argument checking ------------------------------------------------- */

/* The client is TypeScript, but a wrong type reaching C would become a wrong
 * fd or a huge allocation, so check here too, with Node's error codes. */
static bool get_int(napi_env env, napi_value v, const char *name, int64_t min,
                    int64_t max, int64_t *out) {
  napi_valuetype t;
  double d;
  char msg[160];

  if (napi_typeof(env, v, &t) != napi_ok) return throw_napi_failure(env), false;
  if (t != napi_number) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_double(env, v, &d) != napi_ok) return throw_napi_failure(env), false;
  /* Written so that NaN fails the range test. */
  if (!(d >= (double)min && d <= (double)max) || (double)(int64_t)d != d) {
    snprintf(msg, sizeof msg,
             "The value of \"%s\" is out of range. It must be an integer >= %lld and <= %lld",
             name, (long long)min, (long long)max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_fd(napi_env env, napi_value v, const char *name, int *fd) {
  int64_t x;
  if (!get_int(env, v, name, 0, INT32_MAX, &x)) return false;
  *fd = (int)x;
  return true;
}

static bool get_bool(napi_env env, napi_value v, const char *name, bool *out) {
  napi_valuetype t;
  char msg[160];
  if (napi_typeof(env, v, &t) != napi_ok) return throw_napi_failure(env), false;
  if (t != napi_boolean) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type boolean", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_bool(env, v, out) != napi_ok) return throw_napi_failure(env), false;
  return true;
}

/* Missing arguments read as undefined, so the type checks above report them. */
#define ARGS(env, info, n, argv, thisp)                                        \
  size_t argc = (n);                                                           \
  napi_value argv[(n) ? (n) : 1];                                              \
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, thisp, NULL));           \
  for (size_t i_ = argc; i_ < (n); i_++) CHECK(env, napi_get_undefined(env, &argv[i_]))

/* ---- connect / socketpair / close -------------------------------------- */

static napi_value js_connect(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, argv, NULL);
  napi_valuetype t;
  bool is_buf = false;
  char *owned = NULL;
  const char *path;
  size_t len;
  napi_value ret = NULL;
  struct sockaddr_un sa;
  int fd, flags, r, err;

  CHECK(env, napi_typeof(env, argv[0], &t));
  if (t == napi_string) {
    CHECK(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &len));
    if (!(owned = malloc(len + 1))) return throw_sys_error(env, ENOMEM, "connect", NULL, 0);
    if (napi_get_value_string_utf8(env, argv[0], owned, len + 1, &len) != napi_ok) {
      free(owned);
      throw_napi_failure(env);
      return NULL;
    }
    path = owned;
  } else {
    void *data;
    CHECK(env, napi_is_buffer(env, argv[0], &is_buf));
    if (!is_buf) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                            "The \"path\" argument must be of type string or an instance of Buffer");
      return NULL;
    }
    CHECK(env, napi_get_buffer_info(env, argv[0], &data, &len));
    path = data;
  }

  /* A leading NUL selects the abstract namespace, where NULs are just bytes;
   * anywhere else the kernel would stop at it and reach a different socket. */
  if (len > 0 && path[0] != '\0' && memchr(path, '\0', len)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "The \"path\" argument must not contain null bytes");
    goto out;
  }
  /* Refuse rather than truncate: a cut path is someone else's socket.  Linux
   * accepts a full sun_path without a terminating NUL, so all 108 bytes work. */
  if (len > SUN_PATH_MAX) {
    throw_sys_error(env, ENAMETOOLONG, "connect", path, len);
    goto out;
  }
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, len);

  fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_sys_error(env, errno, "socket", NULL, 0);
    goto out;
  }
  /* Blocking on purpose: a Unix-socket connect completes (or fails) at once,
   * except on a full backlog (a wedged daemon), where it waits for room: bounded by
   * SO_SNDTIMEO, which the kernel's unix connect honours (then EAGAIN), so the event
   * loop is never held more than 5 s.  On EINTR the socket is still unconnected, so
   * simply trying again is right for AF_UNIX. */
  {
    struct timeval tv = {5, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  do r = connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    err = errno;
    close(fd);
    throw_sys_error(env, err, "connect", path, len);
    goto out;
  }
  if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    err = errno;
    close(fd);
    throw_sys_error(env, err, "fcntl", NULL, 0);
    goto out;
  }
  if (napi_create_int32(env, fd, &ret) != napi_ok) {
    close(fd);
    throw_napi_failure(env);
    ret = NULL;
  }
out:
  free(owned);
  return ret;
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  napi_value arr, v;
  (void)info;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
    return throw_sys_error(env, errno, "socketpair", NULL, 0);
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_create_int32(env, sv[0], &v) != napi_ok || napi_set_element(env, arr, 0, v) != napi_ok ||
      napi_create_int32(env, sv[1], &v) != napi_ok || napi_set_element(env, arr, 1, v) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    throw_napi_failure(env);
    return NULL;
  }
  return arr;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, argv, NULL);
  int fd;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  /* Never retry: on Linux the fd is released even when close() reports EINTR,
   * and a retry could close a number another part of the process just got.
   * EBADF does throw, so a double close in the client is loud. */
  if (close(fd) < 0 && errno != EINTR) return throw_sys_error(env, errno, "close", NULL, 0);
  return NULL;
}

/* ---- send / recv -------------------------------------------------------- */

static napi_value js_send(napi_env env, napi_callback_info info) {
  ARGS(env, info, 3, argv, NULL);
  int fd, fds[MAX_FDS];
  uint32_t nfds = 0;
  napi_valuetype t;
  napi_typedarray_type type;
  size_t length;
  void *data;
  bool is_ta, is_arr;
  union { /* aligned storage for one SCM_RIGHTS message */
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } ctl;
  struct iovec iov;
  struct msghdr m;
  ssize_t n;
  napi_value ret;

  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  CHECK(env, napi_is_typedarray(env, argv[1], &is_ta));
  if (is_ta) CHECK(env, napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (!is_ta || (type != napi_uint8_array && type != napi_uint8_clamped_array && type != napi_int8_array)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "The \"data\" argument must be an instance of Uint8Array");
    return NULL;
  }

  CHECK(env, napi_typeof(env, argv[2], &t));
  if (t != napi_undefined && t != napi_null) {
    CHECK(env, napi_is_array(env, argv[2], &is_arr));
    if (!is_arr) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                            "The \"fds\" argument must be an array of numbers");
      return NULL;
    }
    CHECK(env, napi_get_array_length(env, argv[2], &nfds));
    if (nfds > MAX_FDS) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "At most 16 fds can be sent at once");
      return NULL;
    }
    for (uint32_t i = 0; i < nfds; i++) {
      napi_value v;
      CHECK(env, napi_get_element(env, argv[2], i, &v));
      if (!get_fd(env, v, "fds[i]", &fds[i])) return NULL;
    }
  }

  iov.iov_base = data;
  iov.iov_len = length;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (nfds > 0) {
    struct cmsghdr *c;
    memset(&ctl, 0, sizeof ctl);
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  /* MSG_NOSIGNAL: a dead daemon must be an EPIPE error, not a SIGPIPE that
   * kills the client's process.  A datagram goes whole or not at all. */
  do n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    /* Would-block is the common case under load, not an exception: return it
     * as a number so the client's hot path stays free of try/catch. */
    if (errno == EAGAIN || errno == EWOULDBLOCK) n = -EAGAIN;
    else return throw_sys_error(env, errno, "sendmsg", NULL, 0);
  }
  CHECK(env, napi_create_int64(env, n, &ret));
  return ret;
}

/* One scratch buffer per thread (the main thread, or a Worker's), grown to the largest
 * size asked and kept: a fresh malloc of a frame's 200 KiB per call is above glibc's mmap
 * threshold, so every receive paid an mmap and an munmap. */
static __thread char *scratch;
static __thread size_t scratch_cap;

static char *scratch_for(size_t size) {
  if (size > scratch_cap) {
    char *b = realloc(scratch, size);
    if (!b) return NULL;
    scratch = b;
    scratch_cap = size;
  }
  return scratch;
}

/* An env's teardown runs on its own thread: a Worker's scratch goes with it. */
static void free_scratch(void *arg) {
  (void)arg;
  free(scratch);
  scratch = NULL;
  scratch_cap = 0;
}

static napi_value js_recv(napi_env env, napi_callback_info info) {
  ARGS(env, info, 2, argv, NULL);
  int fd, err;
  int64_t size;
  char *buf;
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } ctl;
  /* The buffer above holds at most MAX_FDS ints, whatever the cmsg layout. */
  int fds[sizeof ctl.buf / sizeof(int)];
  size_t nfds = 0;
  struct iovec iov;
  struct msghdr m;
  struct cmsghdr *c;
  ssize_t n;
  napi_value ret = NULL, data, arr, v;

  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_int(env, argv[1], "size", 1, MAX_RECV, &size)) return NULL;

  /* The thread's scratch buffer, then one copy of what actually arrived, so the
   * returned Buffer is exactly the datagram.  The copy is cheap next to the
   * syscall for the daemon's replies. */
  if (!(buf = scratch_for((size_t)size))) return throw_sys_error(env, ENOMEM, "recvmsg", NULL, 0);
  iov.iov_base = buf;
  iov.iov_len = (size_t)size;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.buf;
  m.msg_controllen = sizeof ctl.buf;
  /* MSG_CMSG_CLOEXEC: received fds must not leak into children the client's
   * process spawns, and setting it later with fcntl would leave a window. */
  do n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      CHECK(env, napi_get_null(env, &ret));
      return ret;
    }
    return throw_sys_error(env, err, "recvmsg", NULL, 0);
  }

  /* Collect every fd that arrived, also when MSG_CTRUNC says some did not: the
   * kernel installs what fits and describes it in cmsg_len. */
  for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (k > sizeof fds / sizeof fds[0] - nfds) k = sizeof fds / sizeof fds[0] - nfds;
    memcpy(fds + nfds, CMSG_DATA(c), k * sizeof(int));
    nfds += k;
  }

  if (napi_create_buffer_copy(env, (size_t)n, buf, NULL, &data) != napi_ok ||
      napi_create_array_with_length(env, nfds, &arr) != napi_ok)
    goto fail;
  for (size_t i = 0; i < nfds; i++)
    if (napi_create_int32(env, fds[i], &v) != napi_ok || napi_set_element(env, arr, (uint32_t)i, v) != napi_ok)
      goto fail;
  /* msg_flags echoes MSG_CMSG_CLOEXEC back; drop it so flags only says what
   * happened to this datagram (MSG_TRUNC, MSG_CTRUNC). */
  if (napi_create_object(env, &ret) != napi_ok ||
      napi_set_named_property(env, ret, "data", data) != napi_ok ||
      napi_set_named_property(env, ret, "fds", arr) != napi_ok ||
      napi_create_int32(env, m.msg_flags & ~MSG_CMSG_CLOEXEC, &v) != napi_ok ||
      napi_set_named_property(env, ret, "flags", v) != napi_ok)
    goto fail;
  return ret;

fail:
  /* Nobody will ever see these numbers, so they are ours to close. */
  for (size_t i = 0; i < nfds; i++) close(fds[i]);
  throw_napi_failure(env);
  return NULL;
}

/* ---- Poller ------------------------------------------------------------- */

/*
 * Lifetimes.  The struct lives until both the uv handle has finished closing
 * (on_close) and the JS object is gone (finalizer), whichever comes last.
 * The JS object is held strongly only while the handle is active, because
 * only then can a callback arrive; a stopped, forgotten Poller can be
 * collected, and its finalizer closes the handle.  The callback lives as a
 * property of the JS object rather than in a napi_ref, so a callback that
 * refers back to its Poller forms an ordinary cycle the GC can collect
 * instead of being pinned by a root.  An async cleanup hook closes whatever
 * is still open when the environment ends (see poller_cleanup_hook).
 */
typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref self; /* from napi_wrap; count 1 while active, else 0 */
  napi_async_context actx;
  napi_async_cleanup_hook_handle hook;
  int fd;
  bool strong, closing, handle_closed, js_gone, actx_live;
} poller_t;

static void on_close(uv_handle_t *h) {
  poller_t *p = h->data;
  p->handle_closed = true;
  /* Unregisters the teardown hook or, if teardown is what closed us, tells
   * Node it may go on (and, in a Worker, unload the addon): libuv will not
   * call into this handle again. */
  if (p->hook) napi_remove_async_cleanup_hook(p->hook);
  p->hook = NULL;
  if (p->js_gone) free(p);
}

static void sync_ref(poller_t *p) {
  uint32_t count;
  bool want = !p->closing && uv_is_active((uv_handle_t *)&p->handle);
  if (want == p->strong || !p->self) return;
  if ((want ? napi_reference_ref : napi_reference_unref)(p->env, p->self, &count) == napi_ok)
    p->strong = want;
}

static void poller_do_close(poller_t *p) {
  if (p->closing) return;
  p->closing = true;
  uv_close((uv_handle_t *)&p->handle, on_close);
  sync_ref(p);
  if (p->actx_live) {
    napi_async_destroy(p->env, p->actx);
    p->actx_live = false;
  }
}

/* When a Worker ends, its addons are unloaded after its environment is torn
 * down, so a handle still open then would have libuv call on_close in
 * unmapped code (or uv_loop_close find it open).  An async cleanup hook makes
 * teardown wait until on_close has run. */
static void poller_cleanup_hook(napi_async_cleanup_hook_handle h, void *arg) {
  poller_t *p = arg;
  (void)h;
  poller_do_close(p); /* if already closing, on_close is on its way */
}

static void poller_finalize(napi_env env, void *data, void *hint) {
  poller_t *p = data;
  (void)hint;
  p->js_gone = true;
  poller_do_close(p);
  napi_delete_reference(env, p->self);
  p->self = NULL;
  if (p->handle_closed) free(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  poller_t *p = h->data;
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_value self, cb, argv[3], result;
  bool pending = false;

  if (p->closing) return;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  if (napi_get_reference_value(env, p->self, &self) != napi_ok || !self ||
      napi_get_named_property(env, self, "callback", &cb) != napi_ok)
    goto out;
  if (status < 0) {
    /* libuv reports any POLLERR as EBADF and stops the handle.  On a socket
     * the real cause (ECONNRESET when the daemon died with our request
     * unread) is in SO_ERROR; reading it also clears it, so the next recv
     * returns the datagrams still queued and then EOF. */
    int soerr = 0, err = -status;
    socklen_t sl = sizeof soerr;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr > 0) err = soerr;
    if (!(argv[0] = make_sys_error(env, err, "poll", NULL, 0))) goto out;
  } else if (napi_get_null(env, &argv[0]) != napi_ok) {
    goto out;
  }
  if (napi_get_boolean(env, (events & UV_READABLE) != 0, &argv[1]) != napi_ok ||
      napi_get_boolean(env, (events & UV_WRITABLE) != 0, &argv[2]) != napi_ok)
    goto out;
  /* napi_make_callback, not napi_call_function: it enters the async context
   * and drains nextTicks and microtasks on the way out, so promises the
   * client resolves here settle now rather than at some later callback. */
  napi_make_callback(env, p->actx, self, cb, 3, argv, &result);
out:
  /* A throw (or a failure above) must not vanish inside a libuv callback:
   * route it to process 'uncaughtException' like any other callback's. */
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
  /* The callback may have stopped or closed us, or libuv stopped the handle
   * on error; either way the strength of our self reference follows.  p is
   * still valid: it is freed only in on_close, a later loop iteration. */
  sync_ref(p);
  napi_close_handle_scope(env, scope);
}

static napi_value poller_new(napi_env env, napi_callback_info info) {
  napi_value target, self;
  napi_valuetype t;
  uv_loop_t *loop;
  poller_t *p;
  int fd, r;
  ARGS(env, info, 2, argv, &self);

  CHECK(env, napi_get_new_target(env, info, &target));
  if (!target) {
    napi_throw_type_error(env, NULL, "Class constructor Poller cannot be invoked without 'new'");
    return NULL;
  }
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  CHECK(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"cb\" argument must be of type function");
    return NULL;
  }
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  if (!(p = calloc(1, sizeof *p))) return throw_sys_error(env, ENOMEM, "uv_poll_init", NULL, 0);
  /* uv_poll_init fails for an fd epoll cannot watch (EBADF, a regular file
   * with EPERM) or one another handle already polls (EEXIST). */
  if ((r = uv_poll_init(loop, &p->handle, fd)) < 0) {
    free(p);
    return throw_sys_error(env, -r, "uv_poll_init", NULL, 0);
  }
  p->handle.data = p;
  p->env = env;
  p->fd = fd;

  {
    napi_property_descriptor d = {"callback", NULL, NULL, NULL, NULL, argv[1], napi_default, NULL};
    napi_value name;
    if (napi_define_properties(env, self, 1, &d) != napi_ok ||
        napi_create_string_utf8(env, "beneathd.Poller", NAPI_AUTO_LENGTH, &name) != napi_ok)
      goto fail;
    /* With a resource object the async context holds it weakly, so this
     * does not keep the Poller alive by itself. */
    if (napi_async_init(env, self, name, &p->actx) != napi_ok) goto fail;
    p->actx_live = true;
    if (napi_wrap(env, self, p, poller_finalize, NULL, &p->self) != napi_ok) goto fail;
  }
  /* From here the finalizer owns p. */
  if (napi_add_async_cleanup_hook(env, poller_cleanup_hook, p, &p->hook) != napi_ok) {
    p->hook = NULL;
    throw_napi_failure(env);
    poller_do_close(p);
    return NULL;
  }
  return self;

fail:
  throw_napi_failure(env);
  p->js_gone = true; /* no wrap: on_close frees */
  poller_do_close(p);
  return NULL;
}

static poller_t *unwrap(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return throw_napi_failure(env), NULL;
  for (size_t i = argc; i < n; i++)
    if (napi_get_undefined(env, &argv[i]) != napi_ok) return throw_napi_failure(env), NULL;
  if (napi_unwrap(env, self, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "Value of \"this\" must be of type Poller");
    return NULL;
  }
  return p;
}

static napi_value poller_start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool rd, wr;
  int r = 0, events;
  poller_t *p = unwrap(env, info, 2, argv);
  if (!p) return NULL;
  if (!get_bool(env, argv[0], "readable", &rd) || !get_bool(env, argv[1], "writable", &wr)) return NULL;
  if (p->closing) {
    napi_throw_error(env, "ERR_INVALID_STATE", "Poller is closed");
    return NULL;
  }
  events = (rd ? UV_READABLE : 0) | (wr ? UV_WRITABLE : 0);
  /* Restarting with new events replaces the interest set, so the client can
   * drop writable once its send queue drains without losing readable. */
  if (events) r = uv_poll_start(&p->handle, events, on_poll);
  else uv_poll_stop(&p->handle);
  sync_ref(p);
  if (r < 0) return throw_sys_error(env, -r, "uv_poll_start", NULL, 0);
  return NULL;
}

static napi_value poller_ref(napi_env env, napi_callback_info info) {
  poller_t *p = unwrap(env, info, 0, NULL);
  if (p && !p->closing) uv_ref((uv_handle_t *)&p->handle);
  return NULL;
}

static napi_value poller_unref(napi_env env, napi_callback_info info) {
  poller_t *p = unwrap(env, info, 0, NULL);
  if (p && !p->closing) uv_unref((uv_handle_t *)&p->handle);
  return NULL;
}

static napi_value poller_close(napi_env env, napi_callback_info info) {
  poller_t *p = unwrap(env, info, 0, NULL);
  if (p) poller_do_close(p);
  return NULL;
}

/* ---- module ------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_value cls, consts, v;
  if (napi_add_env_cleanup_hook(env, free_scratch, NULL) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  napi_property_descriptor methods[] = {
      {"start", NULL, poller_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, poller_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, poller_unref, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, poller_close, NULL, NULL, NULL, napi_default_method, NULL},
  };
  /* napi_create_function rather than descriptors: it names the functions,
   * which shows in stack traces. */
  static const struct { const char *name; napi_callback fn; } fns[] = {
      {"connect", js_connect}, {"send", js_send}, {"recv", js_recv},
      {"close", js_close}, {"socketpair", js_socketpair}};
  static const struct { const char *name; int value; } cs[] = {
      {"MSG_TRUNC", MSG_TRUNC}, {"MSG_CTRUNC", MSG_CTRUNC}, {"EAGAIN", EAGAIN}};

  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    CHECK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &v));
    CHECK(env, napi_set_named_property(env, exports, fns[i].name, v));
  }
  CHECK(env, napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, poller_new, NULL,
                               sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(env, napi_set_named_property(env, exports, "Poller", cls));
  /* Both as exports.X and exports.constants.X, whichever reads better. */
  CHECK(env, napi_create_object(env, &consts));
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    CHECK(env, napi_create_int32(env, cs[i].value, &v));
    CHECK(env, napi_set_named_property(env, exports, cs[i].name, v));
    CHECK(env, napi_set_named_property(env, consts, cs[i].name, v));
  }
  CHECK(env, napi_object_freeze(env, consts));
  CHECK(env, napi_set_named_property(env, exports, "constants", consts));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
