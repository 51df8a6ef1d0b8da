# Runs a command on a pseudo-terminal of 33 rows and 111 columns, relaying its own stdin and stdout; SIGUSR1 resizes
# the terminal to 40 x 100 (the kernel then sends SIGWINCH to the command). Exits with the command's status.
import fcntl
import os
import select
import signal
import struct
import sys
import termios


def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))


master, slave = os.openpty()
winsize(slave, 33, 111)
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(master)
    os.close(slave)
    os.execvp(sys.argv[1], sys.argv[1:])
os.close(slave)
signal.signal(signal.SIGUSR1, lambda *_: winsize(master, 40, 100))
inputs = [master, 0]
while True:
    ready, _, _ = select.select(inputs, [], [])
    if master in ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            os.write(master, data)
        else:
            inputs.remove(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
