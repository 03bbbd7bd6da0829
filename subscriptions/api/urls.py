"""Routes of the subscriptions REST API, mounted under /api/v1/ by campaignsite.urls."""

from django.urls import path

from subscriptions.api import views

urlpatterns = [
    path("services/", views.ServiceListView.as_view(), name="service-list"),
    path("services/<str:name>/", views.ServiceDetailView.as_view(), name="service-detail"),
    path("subscriptions/", views.SubscriptionListView.as_view(), name="subscription-list"),
    path("subscriptions/history/", views.HistoryListView.as_view(), name="subscription-history"),
    path("subscriptions/subscribe/", views.SubscribeView.as_view(), name="subscription-subscribe"),
    path("subscriptions/unsubscribe/", views.UnsubscribeView.as_view(), name="subscription-unsubscribe"),
    path("subscriptions/process/", views.ProcessView.as_view(), name="subscription-process"),
]
