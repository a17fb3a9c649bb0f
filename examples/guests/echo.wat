;; An example WASI command module (preview 1) for /wasi/run: copies stdin to stdout, then prints
;; its arguments after the program name, one per line, to stderr.
;;
;; Memory layout: 0..8 an iovec {ptr, len}; 8..12 a count written by the host;
;; 16..24 the argument counts; 1024.. argument pointers and bytes; 4096.. the copy buffer.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)

  ;; Writes memory[ptr..ptr+len] to file descriptor fd.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (local $n i32)
    (local $i i32)
    (local $arg i32)
    (local $len i32)
    ;; stdin → stdout, 4 KiB at a time, until end of file.
    (block $eof
      (loop $copy
        (i32.store (i32.const 0) (i32.const 4096))
        (i32.store (i32.const 4) (i32.const 4096))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $write (i32.const 1) (i32.const 4096) (local.get $n))
        (br $copy)))
    ;; Arguments 1.. → stderr, each followed by a newline (the host writes them NUL-terminated).
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (local.set $i (i32.const 1))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
        (local.set $arg (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4)))))
        (local.set $len (i32.const 0))
        (block $end
          (loop $scan
            (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $arg) (local.get $len)))))
            (local.set $len (i32.add (local.get $len) (i32.const 1)))
            (br $scan)))
        ;; Replace the NUL with a newline and write the argument with it.
        (i32.store8 (i32.add (local.get $arg) (local.get $len)) (i32.const 10))
        (call $write (i32.const 2) (local.get $arg) (i32.add (local.get $len) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))))
