"""Child processes: how a loop learns that a subprocess it started exited.

asyncio's Unix loop asks a child watcher for that: the policy's on 3.11-3.13
(``get_child_watcher()``, which an aioloop policy does not have), a private
one made in ``_UnixSelectorEventLoop.__init__`` on 3.14.  aioloop depends on
neither: each loop watches its own children with a ``ChildWatcher``.

- pidfd (Linux 5.3 on): ``os.pidfd_open(pid)`` is a descriptor that becomes
  readable when the child exits.  The loop watches it through its readiness
  API and reaps the child with ``waitpid()`` on the loop thread: no thread,
  no signal handler, nothing process-wide.
- Where ``pidfd_open`` is missing or refused (an old kernel, a seccomp
  filter, no descriptor left), a thread per child blocks in ``waitpid()`` and
  hands the status to the loop with ``call_soon_threadsafe()``, as asyncio's
  ThreadedChildWatcher does.

Either way the exit reaches the transport as ``_process_exited(returncode)``
one loop iteration later, with asyncio's returncode (negative for a signal).
A child reaped by someone else first -- ``Popen.send_signal()`` polls before
it signals, so ``process.kill()`` on a child that just exited reaps it --
reports the status that Popen kept; only a status nobody kept is asyncio's
255 with a warning.
"""
import os
import threading

from asyncio.log import logger

__all__ = ("ChildWatcher",)


class ChildWatcher:
    """The children of one loop whose exit has not been reported yet."""

    def __init__(self, loop):
        self._loop = loop
        self._pidfds = {}    # pid -> pidfd watched by the loop
        self._threads = {}   # pid -> thread blocked in waitpid()

    def watch(self, pid, transport):
        """Report the exit of child ``pid`` to ``transport`` (loop thread)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(pid)
            except OSError:
                pass    # refused here: a thread waits instead
            else:
                try:
                    self._loop._add_reader(pidfd, self._pidfd_ready, pid, pidfd, transport)
                except BaseException:
                    os.close(pidfd)
                    raise
                self._pidfds[pid] = pidfd
                return
        thread = threading.Thread(target=self._wait_in_thread, args=(pid, transport),
                                  name=f"aioloop-waitpid-{pid}", daemon=True)
        self._threads[pid] = thread
        thread.start()

    def watching(self, pid):
        """How the exit of ``pid`` is awaited: "pidfd", "thread" or None."""
        if pid in self._pidfds:
            return "pidfd"
        if pid in self._threads:
            return "thread"
        return None

    def close(self):
        """Stop watching (the loop closes): the descriptors are closed; a
        waiting thread still reaps its child, and reports nothing."""
        for pid, pidfd in list(self._pidfds.items()):
            self._loop._remove_reader(pidfd)
            os.close(pidfd)
        self._pidfds.clear()

    # -- pidfd: the loop thread ------------------------------------------------

    def _pidfd_ready(self, pid, pidfd, transport):
        self._loop._remove_reader(pidfd)
        del self._pidfds[pid]
        os.close(pidfd)
        try:
            # Readable: the child has exited, so this does not block.
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None
        self._exited(pid, status, transport)

    # -- fallback: a thread per child --------------------------------------------

    def _wait_in_thread(self, pid, transport):
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None
        loop = self._loop
        try:
            loop.call_soon_threadsafe(self._thread_done, pid, status, transport)
        except RuntimeError:
            # Closed meanwhile (asyncio's ThreadedChildWatcher says the same).
            logger.warning("Loop %r that handles pid %r is closed", loop, pid)
            self._threads.pop(pid, None)

    def _thread_done(self, pid, status, transport):
        self._threads.pop(pid, None)
        self._exited(pid, status, transport)

    # -- both --------------------------------------------------------------------

    def _exited(self, pid, status, transport):
        if status is not None:
            returncode = os.waitstatus_to_exitcode(status)
        else:
            # Reaped elsewhere first (Popen.poll(), wait() or send_signal()):
            # Popen keeps the status it read.
            proc = transport._proc
            returncode = proc.returncode if proc is not None else None
            if returncode is None:
                returncode = 255
                logger.warning("child process pid %d exit status already read: "
                               " will report returncode 255", pid)
        if self._loop.get_debug():
            logger.debug("process %s exited with returncode %s", pid, returncode)
        self._loop.call_soon(transport._process_exited, returncode)
