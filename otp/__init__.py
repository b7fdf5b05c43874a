"""anyotp: Erlang/OTP-style supervision trees, GenServers and pub/sub for asyncio and trio.

The public names live here; everything else is private. See ``docs/`` and the README.
"""

from __future__ import annotations

import typing as _typing

from ._actor import BRUTAL_KILL as BRUTAL_KILL
from ._actor import ActorRef as ActorRef
from ._actor import ActorStatistics as ActorStatistics
from ._actor import Down as Down
from ._actor import Exit as Exit
from ._actor import MonitorRef as MonitorRef
from ._actor import Shutdown as Shutdown
from ._actor import TimerRef as TimerRef
from ._actor import is_normal_exit as is_normal_exit
from ._backends import Caller as Caller
from ._broker import Broker as Broker
from ._broker import InMemoryBroker as InMemoryBroker
from ._call import Call as Call
from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._codec import MsgpackCodec as MsgpackCodec
from ._codec import Undecodable as Undecodable
from ._envelopes import BrokerStatistics as BrokerStatistics
from ._envelopes import DeadLetter as DeadLetter
from ._envelopes import Envelope as Envelope
from ._envelopes import Middleware as Middleware
from ._envelopes import Request as Request
from ._envelopes import message as message
from ._envelopes import message_type as message_type
from ._exceptions import ActorExited as ActorExited
from ._exceptions import AlreadyPresent as AlreadyPresent
from ._exceptions import AlreadyStarted as AlreadyStarted
from ._exceptions import BadTransition as BadTransition
from ._exceptions import CalledSelf as CalledSelf
from ._exceptions import CallTimeout as CallTimeout
from ._exceptions import ChildRunning as ChildRunning
from ._exceptions import CodecError as CodecError
from ._exceptions import Ignored as Ignored
from ._exceptions import InvalidTopic as InvalidTopic
from ._exceptions import MailboxFull as MailboxFull
from ._exceptions import MaxChildren as MaxChildren
from ._exceptions import NameTaken as NameTaken
from ._exceptions import NoSubscriber as NoSubscriber
from ._exceptions import NotFound as NotFound
from ._exceptions import OTPError as OTPError
from ._exceptions import RemoteError as RemoteError
from ._exceptions import RequestTimeout as RequestTimeout
from ._exceptions import Restarting as Restarting
from ._exceptions import StartFailed as StartFailed
from ._exceptions import SupervisorGaveUp as SupervisorGaveUp
from ._exceptions import WrongThread as WrongThread
from ._gen_server import IGNORE as IGNORE
from ._gen_server import NOREPLY as NOREPLY
from ._gen_server import GenServer as GenServer
from ._gen_server import IdleTimeout as IdleTimeout
from ._global import Global as Global
from ._groups import GroupChange as GroupChange
from ._groups import GroupMonitor as GroupMonitor
from ._groups import Groups as Groups
from ._hashring import HashRing as HashRing
from ._json import JSON_FORM_VERSION as JSON_FORM_VERSION
from ._json import json_converter as json_converter
from ._json import to_json as to_json
from ._logging import install_rich_logging as install_rich_logging
from ._mailbox import Mailbox as Mailbox
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._mailbox import Overflow as Overflow
from ._multicall import MultiCallResult as MultiCallResult
from ._node import Event as Event
from ._node import Node as Node
from ._node import NodeEvent as NodeEvent
from ._node import run as run
from ._ref import Ref as Ref
from ._remote import RemoteRef as RemoteRef
from ._requests import RequestId as RequestId
from ._requests import RequestIds as RequestIds
from ._snapshots import ActorSnapshot as ActorSnapshot
from ._snapshots import SupervisorSnapshot as SupervisorSnapshot
from ._snapshots import TreeSnapshot as TreeSnapshot
from ._specs import ALL_SIGNIFICANT as ALL_SIGNIFICANT
from ._specs import ANY_SIGNIFICANT as ANY_SIGNIFICANT
from ._specs import CONSISTENT_HASH as CONSISTENT_HASH
from ._specs import LEAST_BUSY as LEAST_BUSY
from ._specs import NEVER as NEVER
from ._specs import ONE_FOR_ALL as ONE_FOR_ALL
from ._specs import ONE_FOR_ONE as ONE_FOR_ONE
from ._specs import PERMANENT as PERMANENT
from ._specs import REST_FOR_ONE as REST_FOR_ONE
from ._specs import ROUND_ROBIN as ROUND_ROBIN
from ._specs import TEMPORARY as TEMPORARY
from ._specs import TRANSIENT as TRANSIENT
from ._specs import AutoShutdown as AutoShutdown
from ._specs import Backoff as Backoff
from ._specs import ChildSpec as ChildSpec
from ._specs import PoolSpec as PoolSpec
from ._specs import Restart as Restart
from ._specs import Strategy as Strategy
from ._specs import SupervisorSpec as SupervisorSpec
from ._specs import WorkerSpec as WorkerSpec
from ._specs import dynamic_supervisor as dynamic_supervisor
from ._specs import supervisor as supervisor
from ._specs import worker as worker
from ._specs import worker_pool as worker_pool
from ._statem import CallbackMode as CallbackMode
from ._statem import EventTimeout as EventTimeout
from ._statem import EventType as EventType
from ._statem import GenericTimeout as GenericTimeout
from ._statem import KeepState as KeepState
from ._statem import NextEvent as NextEvent
from ._statem import NextState as NextState
from ._statem import Postpone as Postpone
from ._statem import RepeatState as RepeatState
from ._statem import Reply as Reply
from ._statem import StateEvent as StateEvent
from ._statem import StateMachine as StateMachine
from ._statem import StateTimeout as StateTimeout
from ._statem import Stop as Stop
from ._statem import Transition as Transition
from ._subscriptions import Subscription as Subscription
from ._supervisor_ops import ChildCount as ChildCount
from ._supervisor_ops import ChildInfo as ChildInfo
from ._supervisor_refs import PoolRef as PoolRef
from ._supervisor_refs import SupervisorRef as SupervisorRef
from ._threads import FromThread as FromThread
from ._topics import BROADCAST as BROADCAST
from ._topics import DEAD_LETTERS as DEAD_LETTERS
from ._topics import topic_matches as topic_matches

if _typing.TYPE_CHECKING:
    from . import observer as observer
    from . import pytest_plugin as pytest_plugin
    from . import redis as redis
    from . import testing as testing
    from ._probe import BrokerProbe as BrokerProbe

__version__ = "0.1.0"

# No handler of ours on the "otp" logger: when the application configures no logging,
# Python's last-resort handler prints WARNING and above (crash reports, give-ups, wire
# errors) to stderr, so crashes are never silent; logging.basicConfig() or
# otp.install_rich_logging() take over as soon as the application chooses.

#: Submodules reachable as attributes after a plain ``import otp``, imported on first use
#: so that ``import otp`` pulls in neither coredis nor a web framework.
_LAZY_SUBMODULES = frozenset({"observer", "pytest_plugin", "redis", "testing"})


if not _typing.TYPE_CHECKING:  # a module __getattr__ would hide typos from type checkers

    def __getattr__(name: str) -> _typing.Any:
        if name in _LAZY_SUBMODULES:
            import importlib

            try:
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise  # a missing dependency: its own error names the extra
                raise AttributeError(f"module 'otp' has no attribute {name!r}") from None
        if name == "BrokerProbe":
            import warnings

            from ._probe import BrokerProbe

            warnings.warn(
                "otp.BrokerProbe is deprecated: import it from otp.testing "
                "(from otp.testing import BrokerProbe)",
                DeprecationWarning,
                stacklevel=2,
            )
            return BrokerProbe
        raise AttributeError(f"module 'otp' has no attribute {name!r}")


__all__ = [
    "ALL_SIGNIFICANT",
    "ANY_SIGNIFICANT",
    "ActorExited",
    "ActorRef",
    "ActorSnapshot",
    "ActorStatistics",
    "AlreadyPresent",
    "AlreadyStarted",
    "AutoShutdown",
    "BROADCAST",
    "BRUTAL_KILL",
    "Backoff",
    "BadTransition",
    "Broker",
    "BrokerStatistics",
    "CONSISTENT_HASH",
    "Call",
    "CallTimeout",
    "CallbackMode",
    "CalledSelf",
    "Caller",
    "ChildCount",
    "ChildInfo",
    "ChildRunning",
    "ChildSpec",
    "Codec",
    "CodecError",
    "DEAD_LETTERS",
    "DeadLetter",
    "Down",
    "Envelope",
    "Event",
    "EventTimeout",
    "EventType",
    "Exit",
    "FromThread",
    "GenServer",
    "GenericTimeout",
    "Global",
    "GroupChange",
    "GroupMonitor",
    "Groups",
    "HashRing",
    "IGNORE",
    "IdleTimeout",
    "Ignored",
    "InMemoryBroker",
    "InvalidTopic",
    "JSON_FORM_VERSION",
    "JsonCodec",
    "KeepState",
    "LEAST_BUSY",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "MaxChildren",
    "Middleware",
    "MonitorRef",
    "MsgpackCodec",
    "MultiCallResult",
    "NEVER",
    "NOREPLY",
    "NameTaken",
    "NextEvent",
    "NextState",
    "NoSubscriber",
    "Node",
    "NodeEvent",
    "NotFound",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "OTPError",
    "Overflow",
    "PERMANENT",
    "PoolRef",
    "PoolSpec",
    "Postpone",
    "REST_FOR_ONE",
    "ROUND_ROBIN",
    "Ref",
    "RemoteError",
    "RemoteRef",
    "RepeatState",
    "Reply",
    "Request",
    "RequestId",
    "RequestIds",
    "RequestTimeout",
    "Restart",
    "Restarting",
    "Shutdown",
    "StartFailed",
    "StateEvent",
    "StateMachine",
    "StateTimeout",
    "Stop",
    "Strategy",
    "Subscription",
    "SupervisorGaveUp",
    "SupervisorRef",
    "SupervisorSnapshot",
    "SupervisorSpec",
    "TEMPORARY",
    "TRANSIENT",
    "TimerRef",
    "Transition",
    "TreeSnapshot",
    "Undecodable",
    "WorkerSpec",
    "WrongThread",
    "dynamic_supervisor",
    "install_rich_logging",
    "is_normal_exit",
    "json_converter",
    "message",
    "message_type",
    "run",
    "supervisor",
    "to_json",
    "topic_matches",
    "worker",
    "worker_pool",
]
