import datetime

from bankmesh.common.v1 import money_pb2 as _money_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_TYPE_UNSPECIFIED: _ClassVar[AccountType]
    ACCOUNT_TYPE_CUSTOMER: _ClassVar[AccountType]
    ACCOUNT_TYPE_SETTLEMENT: _ClassVar[AccountType]
    ACCOUNT_TYPE_INTERNAL: _ClassVar[AccountType]

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_ACTIVE: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_FROZEN: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_CLOSED: _ClassVar[AccountStatus]

class TransferKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_KIND_UNSPECIFIED: _ClassVar[TransferKind]
    TRANSFER_KIND_SINGLE_PHASE: _ClassVar[TransferKind]
    TRANSFER_KIND_PENDING: _ClassVar[TransferKind]
    TRANSFER_KIND_POST_PENDING: _ClassVar[TransferKind]
    TRANSFER_KIND_VOID_PENDING: _ClassVar[TransferKind]
    TRANSFER_KIND_EXPIRE_PENDING: _ClassVar[TransferKind]

class PendingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PENDING_STATE_UNSPECIFIED: _ClassVar[PendingState]
    PENDING_STATE_PENDING: _ClassVar[PendingState]
    PENDING_STATE_POSTED: _ClassVar[PendingState]
    PENDING_STATE_VOIDED: _ClassVar[PendingState]
    PENDING_STATE_EXPIRED: _ClassVar[PendingState]

class EntryDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_DIRECTION_UNSPECIFIED: _ClassVar[EntryDirection]
    ENTRY_DIRECTION_DEBIT: _ClassVar[EntryDirection]
    ENTRY_DIRECTION_CREDIT: _ClassVar[EntryDirection]
ACCOUNT_TYPE_UNSPECIFIED: AccountType
ACCOUNT_TYPE_CUSTOMER: AccountType
ACCOUNT_TYPE_SETTLEMENT: AccountType
ACCOUNT_TYPE_INTERNAL: AccountType
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACCOUNT_STATUS_ACTIVE: AccountStatus
ACCOUNT_STATUS_FROZEN: AccountStatus
ACCOUNT_STATUS_CLOSED: AccountStatus
TRANSFER_KIND_UNSPECIFIED: TransferKind
TRANSFER_KIND_SINGLE_PHASE: TransferKind
TRANSFER_KIND_PENDING: TransferKind
TRANSFER_KIND_POST_PENDING: TransferKind
TRANSFER_KIND_VOID_PENDING: TransferKind
TRANSFER_KIND_EXPIRE_PENDING: TransferKind
PENDING_STATE_UNSPECIFIED: PendingState
PENDING_STATE_PENDING: PendingState
PENDING_STATE_POSTED: PendingState
PENDING_STATE_VOIDED: PendingState
PENDING_STATE_EXPIRED: PendingState
ENTRY_DIRECTION_UNSPECIFIED: EntryDirection
ENTRY_DIRECTION_DEBIT: EntryDirection
ENTRY_DIRECTION_CREDIT: EntryDirection

class AccountLimits(_message.Message):
    __slots__ = ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "overdraft_limit_minor_units")
    DEBITS_MUST_NOT_EXCEED_CREDITS_FIELD_NUMBER: _ClassVar[int]
    CREDITS_MUST_NOT_EXCEED_DEBITS_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_MINOR_UNITS_FIELD_NUMBER: _ClassVar[int]
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit_minor_units: int
    def __init__(self, debits_must_not_exceed_credits: _Optional[bool] = ..., credits_must_not_exceed_debits: _Optional[bool] = ..., overdraft_limit_minor_units: _Optional[int] = ...) -> None: ...

class Balances(_message.Message):
    __slots__ = ("currency_code", "debits_posted", "credits_posted", "debits_pending", "credits_pending", "posted", "available")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    DEBITS_POSTED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_POSTED_FIELD_NUMBER: _ClassVar[int]
    DEBITS_PENDING_FIELD_NUMBER: _ClassVar[int]
    CREDITS_PENDING_FIELD_NUMBER: _ClassVar[int]
    POSTED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    posted: _money_pb2.Money
    available: _money_pb2.Money
    def __init__(self, currency_code: _Optional[str] = ..., debits_posted: _Optional[int] = ..., credits_posted: _Optional[int] = ..., debits_pending: _Optional[int] = ..., credits_pending: _Optional[int] = ..., posted: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., available: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "customer_id", "currency_code", "type", "status", "limits", "metadata", "balances", "create_time", "update_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    customer_id: str
    currency_code: str
    type: AccountType
    status: AccountStatus
    limits: AccountLimits
    metadata: _containers.ScalarMap[str, str]
    balances: Balances
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., type: _Optional[_Union[AccountType, str]] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., limits: _Optional[_Union[AccountLimits, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., balances: _Optional[_Union[Balances, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NewTransfer(_message.Message):
    __slots__ = ("transfer_id", "debit_account_id", "credit_account_id", "amount", "kind", "pending_id", "timeout_seconds", "code", "metadata", "linked")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DEBIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PENDING_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LINKED_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: _money_pb2.Money
    kind: TransferKind
    pending_id: str
    timeout_seconds: int
    code: int
    metadata: _containers.ScalarMap[str, str]
    linked: bool
    def __init__(self, transfer_id: _Optional[str] = ..., debit_account_id: _Optional[str] = ..., credit_account_id: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., pending_id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., code: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., linked: _Optional[bool] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("transfer_id", "debit_account_id", "credit_account_id", "amount", "kind", "pending_id", "timeout_seconds", "code", "metadata", "create_time", "expire_time", "pending_state")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DEBIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PENDING_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PENDING_STATE_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: _money_pb2.Money
    kind: TransferKind
    pending_id: str
    timeout_seconds: int
    code: int
    metadata: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    pending_state: PendingState
    def __init__(self, transfer_id: _Optional[str] = ..., debit_account_id: _Optional[str] = ..., credit_account_id: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., pending_id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., code: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_state: _Optional[_Union[PendingState, str]] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("sequence", "transfer_id", "account_id", "kind", "direction", "posted_amount", "pending_change", "balances_after", "code", "metadata", "create_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    POSTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGE_FIELD_NUMBER: _ClassVar[int]
    BALANCES_AFTER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    transfer_id: str
    account_id: str
    kind: TransferKind
    direction: EntryDirection
    posted_amount: _money_pb2.Money
    pending_change: _money_pb2.Money
    balances_after: Balances
    code: int
    metadata: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., transfer_id: _Optional[str] = ..., account_id: _Optional[str] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., direction: _Optional[_Union[EntryDirection, str]] = ..., posted_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., pending_change: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., balances_after: _Optional[_Union[Balances, _Mapping]] = ..., code: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
