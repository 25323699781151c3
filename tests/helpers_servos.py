"""Helpers shared by the tests that drive an emulator through the vendors' SDKs."""


def retry(sdk, fn, *args):
    """Call an SDK TxRx function, retrying a timeout (LeRobot's num_retry): the emulator is a
    thread on a shared machine, and the SDK's own timeout is a fixed 34 ms."""
    for _ in range(5):
        result = fn(*args)
        codes = result if isinstance(result, tuple) else (result,)
        if sdk.COMM_RX_TIMEOUT not in codes:
            return result
    return result
