% rebase("admin_base", title=_("Choose a password"))
<h1>{{_("Choose the console password")}}</h1>
<p>{{_("This page is shown only once, until a password is chosen. Keep the password safe: it lets someone restart the hotspot and change its library.")}}</p>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form class="login" method="post" action="/admin/setup">
<input type="hidden" name="csrf" value="{{token}}">
<label for="password">{{_("New password")}} <small>{{v.ngettext("at least %(n)s character", "at least %(n)s characters", min_length)}}</small></label>
<input id="password" name="password" type="password" autocomplete="new-password" required minlength="{{min_length}}" maxlength="200">
<label for="confirm">{{_("The same password again")}}</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password" required minlength="{{min_length}}" maxlength="200">
<p><button type="submit">{{_("Save the password")}}</button></p>
</form>
