% if refusal:
<p class="note">{{refusal}}</p>
% else:
<form class="contribute" method="post" action="{{v.path}}" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{{token}}">
<p class="hp"><label for="website">{{_("Leave this empty")}}</label><input id="website" name="website" type="text" tabindex="-1" autocomplete="off"></p>
