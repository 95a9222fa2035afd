// Swagger UI for /docs, from the collector's own copy (no CDN; the CSP allows only 'self').
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                               presets: [SwaggerUIBundle.presets.apis]});
});
