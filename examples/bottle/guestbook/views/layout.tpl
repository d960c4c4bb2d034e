<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Guestbook</title></head>
<body><header><a href="/">Guestbook</a></header><main>{{!base}}</main></body>
</html>
