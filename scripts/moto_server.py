#!/usr/bin/env python3
"""moto's server with its SQS queues made safe for concurrent callers.

moto's server answers requests on several threads, but its SQS message operations are not
atomic (checked in moto 5.2.1 and 5.2.5, the newest at the time of writing):

* `Queue.delete_message` rebuilds the queue's message list outside the queue's lock and
  then assigns it. Two deletes that overlap, with a send in between, lose the sent message:
  the send appends to the list the faster delete assigned, and the slower delete replaces
  that list with its own (and brings back the message the faster one deleted).
* `receive_message` reads and marks messages outside the lock, so two concurrent receives
  can hand out the same message, or fail with "Set changed size during iteration".

Real SQS does none of this. The storm test of the pipeline harness (many pollers deleting
while the worker re-sends deliveries that wait) once lost one delivery of 500 with no dead
letter and the queue drained, which is what the first race does.
This launcher serialises every message operation of a queue on that queue's own lock
(a `threading.Condition` over an `RLock`, which `wait` releases, so long polls still wait
without holding it), then runs moto's server with the arguments given.

    python3 scripts/moto_server.py -H 127.0.0.1 -p 5320     # what moto_server takes
    python3 scripts/moto_server.py --self-check             # shows the race and the fix
"""

import functools
import sys
import threading
import time


def patch() -> None:
    """Serialises SQS message operations per queue (idempotent)."""
    from moto.sqs import models

    if getattr(models, "_relay_serialised", False):
        return

    def on_queue_lock(method):
        @functools.wraps(method)
        def locked(self, *args, **kwargs):
            with self._messages_lock:
                return method(self, *args, **kwargs)

        return locked

    def on_named_queue_lock(method):
        @functools.wraps(method)
        def locked(self, queue_name, *args, **kwargs):
            with self.get_queue(queue_name)._messages_lock:
                return method(self, queue_name, *args, **kwargs)

        return locked

    queue, backend = models.Queue, models.SQSBackend
    for name in ("add_message", "delete_message"):
        setattr(queue, name, on_queue_lock(getattr(queue, name)))
    for name in (
        "receive_message",
        "change_message_visibility",
        "change_message_visibility_batch",
        "purge_queue",
    ):
        setattr(backend, name, on_named_queue_lock(getattr(backend, name)))
    models._relay_serialised = True


class _PausingList(list):
    """A message list whose first full iteration by thread `D1` pauses at its end: the
    moment `delete_message` has built its new list but not yet assigned it (its `any(...)`
    check stops early, at m1, the first message)."""

    def __init__(self, items, paused, resume):
        super().__init__(items)
        self.paused, self.resume, self.iterations = paused, resume, 0

    def __iter__(self):
        yield from list.__iter__(self)
        if threading.current_thread().name == "D1":
            self.iterations += 1
            if self.iterations == 1:
                self.paused.set()
                self.resume.wait(2)


def _race(serialised: bool) -> tuple[bool, bool]:
    """Deletes m1 (paused before assigning), meanwhile deletes m2 and sends x; answers
    whether x survived and whether m2 stayed deleted."""
    from moto.sqs import models

    queue = models.Queue(f"race-{serialised}-{time.time_ns()}", "123456789012", "us-east-1")
    handles = {}
    for body in ("m1", "m2"):
        message = models.Message(body + "-id", body)
        message.mark_received()
        handles[body] = message.receipt_handle
        queue.add_message(message)
    paused, resume = threading.Event(), threading.Event()
    queue._messages = _PausingList(queue._messages, paused, resume)
    d1 = threading.Thread(name="D1", target=queue.delete_message, args=(handles["m1"],))
    d1.start()
    paused.wait(2)
    d2 = threading.Thread(target=queue.delete_message, args=(handles["m2"],))
    sender = threading.Thread(target=queue.add_message, args=(models.Message("x-id", "x"),))
    d2.start()
    d2.join(0.3)  # done at once unless serialised (then it waits for D1)
    sender.start()
    sender.join(0.3)
    resume.set()
    for thread in (d1, d2, sender):
        thread.join(5)
    bodies = [m.body for m in queue._messages]
    return "x" in bodies, "m2" not in bodies


def self_check() -> int:
    import moto

    lost, resurrected = (not kept for kept in _race(serialised=False))
    print(
        f"moto as released: the concurrent send {'was lost' if lost else 'survived'}, "
        f"the other delete {'was undone' if resurrected else 'held'}"
    )
    patch()
    kept, deleted = _race(serialised=True)
    print(
        f"serialised: the concurrent send {'survived' if kept else 'was lost'}, "
        f"the other delete {'held' if deleted else 'was undone'}"
    )
    if not (kept and deleted):
        print("FAIL: the serialised queue still loses messages", file=sys.stderr)
        return 1
    if not (lost or resurrected):
        print(
            f"note: moto {moto.__version__} no longer shows the race; the launcher's "
            "patch may be unnecessary",
        )
    return 0


def main() -> None:
    if sys.argv[1:] == ["--self-check"]:
        sys.exit(self_check())
    patch()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
