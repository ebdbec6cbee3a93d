"""TLS: not built yet (issue 11).  Until it is, every way in refuses ssl=
with NotImplementedError before any socket is made, so no program runs
unencrypted by mistake."""
from asyncio import base_events, unix_events

TLS_MESSAGE = "uringloop does not support TLS (ssl=) yet"


def _refusing_tls(method):
    """asyncio's `method`, raising NotImplementedError for ssl=."""
    async def wrapper(self, *args, ssl=None, **kwargs):
        if ssl:
            self._refuse_tls()
        return await method(self, *args, **kwargs)
    wrapper.__name__ = method.__name__
    wrapper.__qualname__ = f"Loop.{method.__name__}"
    wrapper.__doc__ = method.__doc__
    return wrapper


class TLSMethods:
    """Loop methods that take ssl=, and the hooks asyncio calls for TLS."""

    create_connection = _refusing_tls(base_events.BaseEventLoop.create_connection)
    create_server = _refusing_tls(base_events.BaseEventLoop.create_server)
    connect_accepted_socket = _refusing_tls(base_events.BaseEventLoop.connect_accepted_socket)
    create_unix_connection = _refusing_tls(
        unix_events._UnixSelectorEventLoop.create_unix_connection)
    create_unix_server = _refusing_tls(unix_events._UnixSelectorEventLoop.create_unix_server)

    def _refuse_tls(self):
        raise NotImplementedError(TLS_MESSAGE)

    def _make_ssl_transport(self, *args, **kwargs):
        self._refuse_tls()

    async def start_tls(self, *args, **kwargs):
        self._refuse_tls()
