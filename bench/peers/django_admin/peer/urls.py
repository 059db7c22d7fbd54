from django.contrib import admin
from django.urls import path

from .admin import nocount_site

urlpatterns = [
    path("admin/", admin.site.urls),
    path("admin-nocount/", nocount_site.urls),
]
