% rebase("admin_base", title=_("Log in"))
<h1>{{_("Caretaker console")}}</h1>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form class="login" method="post" action="/admin/login">
<input type="hidden" name="csrf" value="{{token}}">
<label for="password">{{_("Password")}}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="200">
<p><button type="submit">{{_("Log in")}}</button></p>
</form>
<p><small>{{_("Forgot the password? Someone with the hotspot's command line can set a new one: hotspot admin set-password")}}</small></p>
