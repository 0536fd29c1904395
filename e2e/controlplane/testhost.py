#!/usr/bin/env python3
"""A test host's services (cluster.sh --real-node runs it inside the test
hosts' network namespaces): for each PROTO:ADDR:PORT it listens and records
the source of every TCP connection and every UDP datagram as one line
"PROTO LISTEN_ADDR:PORT SRC_ADDR:SRC_PORT" in LOG; a TCP connection gets
a minimal HTTP/1.0 response with the body "hello from ADDR\\n" (whatever it
sent), UDP datagrams are echoed back.

    testhost.py LOG PROTO:ADDR:PORT...
"""
import socket, sys, threading

log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()

def record(proto, here, src):
    with lock:
        log.write(f"{proto} {here[0]}:{here[1]} {src[0]}:{src[1]}\n")

def tcp(addr, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, src = s.accept()
        record("tcp", (addr, port), src)
        try:
            c.settimeout(1)
            try:
                c.recv(4096)
            except OSError:
                pass
            body = f"hello from {addr}\n"
            c.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        except OSError:
            pass
        c.close()

def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    while True:
        data, src = s.recvfrom(65535)
        record("udp", (addr, port), src)
        s.sendto(data, src)

threads = []
for spec in sys.argv[2:]:
    proto, addr, port = spec.split(":")
    t = threading.Thread(target={"tcp": tcp, "udp": udp}[proto], args=(addr, int(port)), daemon=True)
    t.start(); threads.append(t)
print("listening:", " ".join(sys.argv[2:]), flush=True)
for t in threads:
    t.join()
