"""One HTTP/2 stream's flow control, the same at both ends of the gateway.

Inbound, DATA is acknowledged (its window reopened) once handed on, unless the stream
is paused: then the peer runs out of window and stops, which is how a slow consumer
on the other side pushes back across HTTP/2. Outbound, bytes wait while the peer's
window is shut, and the producer feeding them (the other side's socket) is paused
until a WINDOW_UPDATE drains them.

A stream is the Twisted ``transport`` the exchange pairs producers with: it is a
producer (``pauseProducing``: stop acknowledging) and a consumer
(``registerProducer``: whom to pause while its output waits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from h2.connection import ConnectionInputs, ConnectionState
from h2.exceptions import ProtocolError

if TYPE_CHECKING:
    from h2.connection import H2Connection


def tolerate_goaway(h2: H2Connection) -> None:
    """Let the streams a peer's GOAWAY spares finish. hyper-h2 moves a connection to
    CLOSED on receiving a GOAWAY, and then refuses every frame in or out, even those of
    the rest of the same read, although RFC 9113 §6.8 lets the streams up to the last
    stream id complete. This connection's state machine gets a transition table of its
    own in which receiving GOAWAY keeps it open; the owner opens no stream after one."""
    machine = h2.state_machine
    transitions = dict(machine._transitions)
    for state in (ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN):
        transitions[(state, ConnectionInputs.RECV_GOAWAY)] = (None, state)
    machine._transitions = transitions


class Session:
    """What the streams of one HTTP/2 connection share: the state machine, the open
    streams by id, whether it has bytes to send (``dirty``), the streams whose output
    waits for window, and whether the socket itself is backed up (``write_paused``)."""

    def __init__(self, h2: H2Connection) -> None:
        self.h2 = h2
        self.streams: dict[int, StreamFlow] = {}
        self.dirty = False
        self.blocked: set[StreamFlow] = set()
        self.write_paused = False
        self.data_frames = 0  # DATA frames sent (the control-frame budget earns by them)

    def window_opened(self, stream_id: int) -> None:
        """A WINDOW_UPDATE (or SETTINGS) arrived: send what waited for it."""
        if stream_id:
            for stream in list(self.blocked):
                if stream.id == stream_id:
                    stream.send_waiting()
        else:
            for stream in list(self.blocked):
                stream.send_waiting()

    def pause_producers(self, paused: bool) -> None:
        """The socket is backed up (or drained): pause (resume) every stream's feed."""
        self.write_paused = paused
        for stream in list(self.streams.values()):
            stream.update_producer()


class StreamFlow:
    """Flow control of stream ``id`` on ``session``."""

    def __init__(self, session: Session, stream_id: int) -> None:
        self.session = session
        self.id = stream_id
        self.producer = None
        self.producer_paused = False
        self.paused = False  # reading paused by the exchange (its body waits)
        self.held = False  # paused by the consumer of what this stream receives
        self.unacked = 0
        self.waiting: list[bytes] = []  # DATA waiting for window
        self.ending = False  # END_STREAM once ``waiting`` is sent
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.local_closed = False

    @property
    def transport(self) -> StreamFlow:
        """What the exchange pairs producers with: the stream itself (a property, not
        an attribute, so the stream holds no reference to itself)."""
        return self

    # -- inbound

    def received(self, size: int) -> None:
        """``size`` flow-controlled bytes were handed on."""
        self.unacked += size
        if not (self.paused or self.held):
            self._acknowledge()

    def _acknowledge(self) -> None:
        """Reopen the window for what was handed on (also when the stream ends: the
        connection's window must not shrink by what a closed stream was sent)."""
        if self.unacked:
            size, self.unacked = self.unacked, 0
            try:
                self.session.h2.acknowledge_received_data(size, self.id)
            except ProtocolError:
                return  # (the connection is closing)
            self.session.dirty = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if not self.held:
                self._acknowledge()

    # the producer the consumer on the other side pauses
    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.held = True

    def resumeProducing(self) -> None:  # noqa: N802
        if self.held:
            self.held = False
            if not self.paused:
                self._acknowledge()

    def stopProducing(self) -> None:  # noqa: N802
        self.held = True

    # -- outbound

    def registerProducer(self, producer, streaming: bool) -> None:  # noqa: N802
        self.producer = producer
        self.producer_paused = False
        self.update_producer()

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def update_producer(self) -> None:
        """Pause the producer while output waits or the socket is backed up."""
        producer = self.producer
        if producer is None:
            return
        pause = bool(self.waiting) or self.session.write_paused
        if pause != self.producer_paused:
            self.producer_paused = pause
            if pause:
                producer.pauseProducing()
            else:
                producer.resumeProducing()

    def send_body(self, data: bytes) -> None:
        if self.local_closed or not data:
            return
        self.waiting.append(data)
        self.send_waiting()

    def send_finish(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """End the stream (with ``trailers``) once what waits has been sent."""
        if self.local_closed:
            return
        self.ending = True
        self.trailers = trailers
        self.send_waiting()

    def send_waiting(self) -> None:
        """Send what the peer's window allows; end the stream if that was all."""
        session = self.session
        h2 = session.h2
        waiting = self.waiting
        try:
            while waiting:
                window = min(h2.local_flow_control_window(self.id), h2.max_outbound_frame_size)
                if window <= 0:
                    break
                data = waiting[0]
                if len(data) > window:
                    waiting[0] = data[window:]
                    data = data[:window]
                else:
                    del waiting[0]
                last = self.ending and not waiting and self.trailers is None
                h2.send_data(self.id, data, end_stream=last)
                session.dirty = True
                session.data_frames += 1
                if last:
                    self._closed_locally()
                    return
            if waiting:
                session.blocked.add(self)
            else:
                session.blocked.discard(self)
                if self.ending:
                    if self.trailers is not None:
                        h2.send_headers(self.id, self.trailers, end_stream=True)
                    else:
                        h2.end_stream(self.id)
                    session.dirty = True
                    self._closed_locally()
                    return
        except ProtocolError:
            self._closed_locally()  # (the peer reset it, or the connection is closing)
            return
        self.update_producer()

    def _closed_locally(self) -> None:
        self.local_closed = True
        self.waiting = []
        self.session.blocked.discard(self)
        self.sent_all()

    def discard(self) -> None:
        """The stream is over: drop what waits to go out, give back the window of
        what came in unacknowledged, and let go of the producer."""
        self.waiting = []
        self.session.blocked.discard(self)
        self.producer = None
        self._acknowledge()

    def sent_all(self) -> None:
        """Called once this end of the stream is closed."""
