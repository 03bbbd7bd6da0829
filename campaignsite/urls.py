from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from campaignsite.soap import soap_router, soap_wsdl
from staging.admin import dashboard_view
from staging.soap import ping, redir_test

urlpatterns = [
    # Campaign's SOAP endpoints. A client endpoint configured with a trailing slash calls
    # //nl/jsp/soaprouter.jsp (the SDK appends the path verbatim), so that form is accepted too.
    re_path(r"^[/]?nl/jsp/soaprouter\.jsp$", soap_router, name="soap-router"),
    re_path(r"^[/]?nl/jsp/schemawsdl\.jsp$", soap_wsdl, name="soap-wsdl"),
    # The probes Campaign clients call before or without logging on (the SDK's test() and ping()).
    re_path(r"^[/]?r/test$", redir_test, name="redir-test"),
    re_path(r"^[/]?nl/jsp/ping\.jsp$", ping, name="ping"),
    # A page of the admin that belongs to no model; before admin.site.urls so it wins.
    path("admin/staging/dashboard/", admin.site.admin_view(dashboard_view), name="staging_dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("staging.api.urls")),
    path("api/v1/", include("subscriptions.api.urls")),
    path("subscriptions/", include("subscriptions.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# Under /api/ a URL that matches no endpoint (a schema id not of the form namespace:name, say)
# answers the API's JSON error body; other paths keep Django's pages.
handler404 = "campaignsite.api.not_found"
handler500 = "campaignsite.api.server_failed"
