;; The program of rt's conformance kit for the wasm kind: one WASI (preview1) command that does
;; the kit's abstract actions, chosen by argv[1]:
;;
;;   sleep                 wait until signalled
;;   exit CODE             exit with CODE, printing nothing
;;   print OUT ERR CODE    OUT and a newline to stdout, ERR and a newline to stderr, exit CODE
;;   getenv NAME           the variable's value and a newline (an empty line when unset)
;;   cat PATH              the file's contents to stdout
;;   write PATH TEXT       TEXT into PATH (created or truncated), exit 0
;;
;; A path is opened below the preopen whose name is its longest prefix ("/", a bind mount's
;; destination); a relative path below the preopen "." (the process's cwd), else below "/".
;; Errors go to stderr as "conformance: ..." with exit 1 (2 for bad arguments).
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Fixed addresses:
  ;;   0 iovec {ptr, len}   8 bytes done   16 argc   20 argv size   24 envc   28 environ size
  ;;   32 opened fd   40 "\n"   48 a clock subscription (48 bytes)   96 its event (32 bytes)
  ;;   128 prestat (8 bytes)   144 nevents   160..176 digits of a number
  ;;   256.. NUL-terminated strings   4096.. the heap
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $argc (mut i32) (i32.const 0))
  (global $argv (mut i32) (i32.const 0))
  (global $dirfd (mut i32) (i32.const -1))

  (data (i32.const 40) "\n")
  (data (i32.const 256) "sleep\00")
  (data (i32.const 272) "exit\00")
  (data (i32.const 288) "print\00")
  (data (i32.const 304) "getenv\00")
  (data (i32.const 320) "cat\00")
  (data (i32.const 336) "write\00")
  (data (i32.const 352) ".\00")
  (data (i32.const 384) "conformance: \00")
  (data (i32.const 416) ": no preopened directory holds it\00")
  (data (i32.const 464) ": WASI errno \00")
  (data (i32.const 512) "usage: sleep | exit CODE | print OUT ERR CODE | getenv NAME | cat PATH | write PATH TEXT\00")

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; are the $n bytes at $a and $b the same?
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  (func $streq (param $a i32) (param $b i32) (result i32)
    (local $n i32)
    (local.set $n (call $strlen (local.get $a)))
    (if (i32.ne (local.get $n) (call $strlen (local.get $b))) (then (return (i32.const 0))))
    (call $memeq (local.get $a) (local.get $b) (local.get $n)))

  ;; $n bytes from the heap, growing the memory as needed
  (func $alloc (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (block $enough
      (loop $grow
        (br_if $enough (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (call $proc_exit (i32.const 1))))
        (br $grow)))
    (local.get $p))

  ;; write all $n bytes at $p to $fd; returns a WASI errno
  (func $write_all (param $fd i32) (param $p i32) (param $n i32) (result i32)
    (local $e i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $n))
        (local.set $e (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (local.get $e) (then (return (local.get $e))))
        (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
        (br $more)))
    (i32.const 0))

  (func $puts (param $fd i32) (param $s i32)
    (drop (call $write_all (local.get $fd) (local.get $s) (call $strlen (local.get $s)))))

  (func $newline (param $fd i32)
    (drop (call $write_all (local.get $fd) (i32.const 40) (i32.const 1))))

  (func $put_number (param $fd i32) (param $v i32)
    (local $p i32)
    (local.set $p (i32.const 176))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (drop (call $write_all (local.get $fd) (local.get $p) (i32.sub (i32.const 176) (local.get $p)))))

  ;; "conformance: PATH: WASI errno N" on stderr, exit 1
  (func $fail (param $path i32) (param $errno i32)
    (call $puts (i32.const 2) (i32.const 384))
    (call $puts (i32.const 2) (local.get $path))
    (if (local.get $errno)
      (then (call $puts (i32.const 2) (i32.const 464))
            (call $put_number (i32.const 2) (local.get $errno)))
      (else (call $puts (i32.const 2) (i32.const 416))))
    (call $newline (i32.const 2))
    (call $proc_exit (i32.const 1)))

  (func $usage
    (call $puts (i32.const 2) (i32.const 384))
    (call $puts (i32.const 2) (i32.const 512))
    (call $newline (i32.const 2))
    (call $proc_exit (i32.const 2)))

  (func $arg (param $i i32) (result i32)
    (if (i32.ge_u (local.get $i) (global.get $argc)) (then (call $usage)))
    (i32.load (i32.add (global.get $argv) (i32.shl (local.get $i) (i32.const 2)))))

  (func $atoi (param $s i32) (result i32)
    (local $n i32) (local $c i32)
    (loop $digit
      (local.set $c (i32.load8_u (local.get $s)))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
        (then
          (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br $digit))))
    (local.get $n))

  ;; The preopen that serves $path: sets $dirfd, returns the path relative to it.
  (func $resolve (param $path i32) (result i32)
    (local $abs i32) (local $plen i32) (local $fd i32) (local $n i32) (local $name i32)
    (local $best i32) (local $root i32) (local $dot i32) (local $rel i32)
    (local.set $plen (call $strlen (local.get $path)))
    (local.set $abs (i32.eq (i32.load8_u (local.get $path)) (i32.const 47)))
    (local.set $best (i32.const -1))
    (local.set $root (i32.const -1))
    (local.set $dot (i32.const -1))
    (global.set $dirfd (i32.const -1))
    (local.set $fd (i32.const 3))
    (block $last
      (loop $each
        (br_if $last (call $fd_prestat_get (local.get $fd) (i32.const 128)))
        (if (i32.eqz (i32.load8_u (i32.const 128)))
          (then
            (local.set $n (i32.load (i32.const 132)))
            (local.set $name (call $alloc (i32.add (local.get $n) (i32.const 1))))
            (if (i32.eqz (call $fd_prestat_dir_name (local.get $fd) (local.get $name) (local.get $n)))
              (then
                (i32.store8 (i32.add (local.get $name) (local.get $n)) (i32.const 0))
                (if (call $streq (local.get $name) (i32.const 352)) (then (local.set $dot (local.get $fd))))
                (if (i32.eq (i32.load8_u (local.get $name)) (i32.const 47))
                  (then
                    ;; "/data/" compares as "/data", and "/" as ""
                    (block $trimmed
                      (loop $trim
                        (br_if $trimmed (i32.eqz (local.get $n)))
                        (br_if $trimmed (i32.ne (i32.load8_u (i32.add (local.get $name) (i32.sub (local.get $n) (i32.const 1))))
                                                (i32.const 47)))
                        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                        (br $trim)))
                    (if (i32.eqz (local.get $n)) (then (local.set $root (local.get $fd))))
                    (if (i32.and (local.get $abs)
                          (i32.and (i32.gt_s (local.get $n) (local.get $best))
                                   (i32.le_u (local.get $n) (local.get $plen))))
                      (then
                        (if (i32.and (call $memeq (local.get $name) (local.get $path) (local.get $n))
                                     (i32.or (i32.eq (local.get $n) (local.get $plen))
                                             (i32.eq (i32.load8_u (i32.add (local.get $path) (local.get $n))) (i32.const 47))))
                          (then (local.set $best (local.get $n))
                                (global.set $dirfd (local.get $fd))))))))))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $each)))
    (if (i32.eqz (local.get $abs))
      (then (global.set $dirfd (select (local.get $dot) (local.get $root) (i32.ge_s (local.get $dot) (i32.const 0))))
            (local.set $best (i32.const 0))))
    (if (i32.lt_s (global.get $dirfd) (i32.const 0)) (then (call $fail (local.get $path) (i32.const 0))))
    (local.set $rel (i32.add (local.get $path) (local.get $best)))
    (block $bare
      (loop $slash
        (br_if $bare (i32.ne (i32.load8_u (local.get $rel)) (i32.const 47)))
        (local.set $rel (i32.add (local.get $rel) (i32.const 1)))
        (br $slash)))
    (if (i32.eqz (i32.load8_u (local.get $rel))) (then (local.set $rel (i32.const 352))))
    (local.get $rel))

  ;; open $path with these oflags and rights; returns the fd (exits on failure)
  (func $open (param $path i32) (param $oflags i32) (param $rights i64) (result i32)
    (local $rel i32) (local $e i32)
    (local.set $rel (call $resolve (local.get $path)))
    (local.set $e (call $path_open (global.get $dirfd) (i32.const 1) ;; follow symlinks
                    (local.get $rel) (call $strlen (local.get $rel))
                    (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 32)))
    (if (local.get $e) (then (call $fail (local.get $path) (local.get $e))))
    (i32.load (i32.const 32)))

  (func $sleep
    ;; a relative clock subscription of one hour on CLOCK_MONOTONIC, again and again
    (i64.store (i32.const 48) (i64.const 0))
    (i32.store8 (i32.const 56) (i32.const 0))
    (i32.store (i32.const 64) (i32.const 1))
    (i64.store (i32.const 72) (i64.const 3600000000000))
    (i64.store (i32.const 80) (i64.const 0))
    (i32.store16 (i32.const 88) (i32.const 0))
    (loop $forever
      (drop (call $poll_oneoff (i32.const 48) (i32.const 96) (i32.const 1) (i32.const 144)))
      (br $forever)))

  (func $getenv (param $name i32)
    (local $count i32) (local $envp i32) (local $i i32) (local $e i32) (local $n i32)
    (drop (call $environ_sizes_get (i32.const 24) (i32.const 28)))
    (local.set $count (i32.load (i32.const 24)))
    (local.set $envp (call $alloc (i32.shl (local.get $count) (i32.const 2))))
    (drop (call $environ_get (local.get $envp) (call $alloc (i32.load (i32.const 28)))))
    (local.set $n (call $strlen (local.get $name)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $e (i32.load (i32.add (local.get $envp) (i32.shl (local.get $i) (i32.const 2)))))
        (if (i32.and (call $memeq (local.get $e) (local.get $name) (local.get $n))
                     (i32.eq (i32.load8_u (i32.add (local.get $e) (local.get $n))) (i32.const 61)))
          (then (call $puts (i32.const 1) (i32.add (local.get $e) (i32.add (local.get $n) (i32.const 1))))
                (br $done)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (call $newline (i32.const 1)))

  (func $cat (param $path i32)
    (local $fd i32) (local $buf i32) (local $e i32) (local $got i32)
    (local.set $fd (call $open (local.get $path) (i32.const 0) (i64.const 2))) ;; fd_read
    (local.set $buf (call $alloc (i32.const 65536)))
    (loop $more
      (i32.store (i32.const 0) (local.get $buf))
      (i32.store (i32.const 4) (i32.const 65536))
      (local.set $e (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (local.get $e) (then (call $fail (local.get $path) (local.get $e))))
      (local.set $got (i32.load (i32.const 8)))
      (if (local.get $got)
        (then
          (local.set $e (call $write_all (i32.const 1) (local.get $buf) (local.get $got)))
          (if (local.get $e) (then (call $proc_exit (i32.const 1))))
          (br $more))))
    (drop (call $fd_close (local.get $fd))))

  (func $write (param $path i32) (param $text i32)
    (local $fd i32) (local $e i32)
    (local.set $fd (call $open (local.get $path) (i32.const 9) (i64.const 64))) ;; creat|trunc, fd_write
    (local.set $e (call $write_all (local.get $fd) (local.get $text) (call $strlen (local.get $text))))
    (if (local.get $e) (then (call $fail (local.get $path) (local.get $e))))
    (local.set $e (call $fd_close (local.get $fd)))
    (if (local.get $e) (then (call $fail (local.get $path) (local.get $e)))))

  (func (export "_start")
    (local $action i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (global.set $argc (i32.load (i32.const 16)))
    (global.set $argv (call $alloc (i32.shl (global.get $argc) (i32.const 2))))
    (drop (call $args_get (global.get $argv) (call $alloc (i32.load (i32.const 20)))))
    (local.set $action (call $arg (i32.const 1)))
    (if (call $streq (local.get $action) (i32.const 256)) (then (call $sleep)))
    (if (call $streq (local.get $action) (i32.const 272))
      (then (call $proc_exit (call $atoi (call $arg (i32.const 2))))))
    (if (call $streq (local.get $action) (i32.const 288))
      (then
        (drop (call $arg (i32.const 4)))
        (call $puts (i32.const 1) (call $arg (i32.const 2)))
        (call $newline (i32.const 1))
        (call $puts (i32.const 2) (call $arg (i32.const 3)))
        (call $newline (i32.const 2))
        (call $proc_exit (call $atoi (call $arg (i32.const 4))))))
    (if (call $streq (local.get $action) (i32.const 304))
      (then (call $getenv (call $arg (i32.const 2))) (return)))
    (if (call $streq (local.get $action) (i32.const 320))
      (then (call $cat (call $arg (i32.const 2))) (return)))
    (if (call $streq (local.get $action) (i32.const 336))
      (then (drop (call $arg (i32.const 3)))
            (call $write (call $arg (i32.const 2)) (call $arg (i32.const 3))) (return)))
    (call $usage))
)
