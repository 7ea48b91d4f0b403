"""The PaymentService gRPC servicer: protobuf in, use case, protobuf out.

No rules here (cosmicpython's thin entrypoint): parsing lives in convert.py,
decisions in the domain and the use cases, and errors are mapped by the
mesh's interceptor. Each call runs with its caller (from mesh.context) and
its deadline (for the waits and outbound calls it makes).
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from bankmesh.common.v1 import pagination_pb2
from bankmesh.payment.v1 import payment_service_pb2 as svc
from bankmesh.payment.v1 import payment_service_pb2_grpc as svc_grpc
from services.payment.service_layer import deadlines
from services.payment.service_layer.payments import Payments

from . import convert

Context = grpc.aio.ServicerContext[Any, Any]


class PaymentServicer(svc_grpc.PaymentServiceServicer):
    def __init__(self, payments: Payments) -> None:
        self._payments = payments

    async def CreatePayment(
        self, request: svc.CreatePaymentRequest, context: Context
    ) -> svc.CreatePaymentResponse:
        with deadlines.within(context.time_remaining()):
            payment = await self._payments.create(
                convert.current_caller(), convert.payment_request(request)
            )
        return svc.CreatePaymentResponse(payment=convert.payment(payment))

    async def GetPayment(
        self, request: svc.GetPaymentRequest, context: Context
    ) -> svc.GetPaymentResponse:
        with deadlines.within(context.time_remaining()):
            payment = await self._payments.get(
                convert.current_caller(), convert.required_uuid(request.payment_id, "payment_id")
            )
        return svc.GetPaymentResponse(payment=convert.payment(payment))

    async def ListPayments(
        self, request: svc.ListPaymentsRequest, context: Context
    ) -> svc.ListPaymentsResponse:
        with deadlines.within(context.time_remaining()):
            page = await self._payments.list_payments(
                convert.current_caller(),
                convert.required_uuid(request.account_id, "account_id"),
                request.page.page_size,
                request.page.page_token,
            )
        return svc.ListPaymentsResponse(
            payments=[convert.payment(p) for p in page.items],
            page=pagination_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def RefundPayment(
        self, request: svc.RefundPaymentRequest, context: Context
    ) -> svc.RefundPaymentResponse:
        with deadlines.within(context.time_remaining()):
            payment = await self._payments.refund(
                convert.current_caller(), convert.refund_request(request)
            )
        return svc.RefundPaymentResponse(payment=convert.payment(payment))

    async def ApprovePayment(
        self, request: svc.ApprovePaymentRequest, context: Context
    ) -> svc.ApprovePaymentResponse:
        with deadlines.within(context.time_remaining()):
            payment = await self._payments.approve(
                convert.current_caller(),
                convert.required_uuid(request.payment_id, "payment_id"),
                request.note,
            )
        return svc.ApprovePaymentResponse(payment=convert.payment(payment))

    async def RejectPayment(
        self, request: svc.RejectPaymentRequest, context: Context
    ) -> svc.RejectPaymentResponse:
        with deadlines.within(context.time_remaining()):
            payment = await self._payments.reject(
                convert.current_caller(),
                convert.required_uuid(request.payment_id, "payment_id"),
                request.note,
            )
        return svc.RejectPaymentResponse(payment=convert.payment(payment))
