"""The page a confirmation email links to (double opt-in).

Opening the link shows a button; only the POST confirms. Mail scanners and link previews fetch
links on their own, and a GET that confirmed would subscribe people who never clicked.
"""

from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from campaignsite.errors import DomainError
from subscriptions import services


@require_http_methods(["GET", "POST"])
def confirm(request, token: str):
    if request.method == "GET":
        return render(request, "subscriptions/confirm.html", {
            "ok": True, "ask": True, "title": "Confirm your subscription",
            "message": "Press the button to confirm that you want to receive it.",
        })
    try:
        result = services.subscription_confirm(token=token)
    except DomainError as error:
        return render(request, "subscriptions/confirm.html", {
            "ok": False, "title": error.message,
            "message": "; ".join(p.message for p in error.problems),
        }, status=error.status)
    service = result.subscription.service
    name = service.label or service.name
    return render(request, "subscriptions/confirm.html", {
        "ok": True, "title": "Subscription confirmed",
        "message": (f"You are subscribed to {name}." if result.newly_confirmed
                    else f"Your subscription to {name} was already confirmed."),
    })
